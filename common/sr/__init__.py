"""SA-DARTS on ×2 super-resolution (SA paper §4.3, §6.7, Tables 3 and 7): spaces, data, PSNR, search, retrain.

Modules: `spaces` (IMDN and DLSR search spaces, genotypes, discrete nets, parameter and multiply-add
counts), `data` (DIV2K and the four test sets), `metrics` (MATLAB-style bicubic, PSNR on Y), `search`
(the bilevel search with a pluggable α regulariser and Eq. 18's FLOPs term), `train` (retrain a genotype
and report PSNR per test set beside the paper's row).

The paper's rows (commands; never run here). The search goes through `sa_darts.py --task sr`, which hands
`sa_loss`, `sa_coefficient` and `beta_loss` to `common.sr.search.main`; DATA holds DIV2K/ and benchmark/
(see common.sr.data).

    # DLSR reproduced (plain DARTS on DLSR's space), SA-DLSR, DLSR + β-DARTS
    python sa_darts.py --task sr --space dlsr --reg none --data-dir DATA --out runs/sr/dlsr-darts
    python sa_darts.py --task sr --space dlsr --reg sa   --data-dir DATA --out runs/sr/sa-dlsr
    python sa_darts.py --task sr --space dlsr --reg beta --data-dir DATA --out runs/sr/dlsr-beta
    # IMDN + β-DARTS, SA-IMDN, SA-IMDN with the FLOPs constraint (Eq. 18)
    python sa_darts.py --task sr --space imdn --reg beta --data-dir DATA --out runs/sr/imdn-beta
    python sa_darts.py --task sr --space imdn --reg sa   --data-dir DATA --out runs/sr/sa-imdn
    python sa_darts.py --task sr --space imdn --reg sa --flops-weight 1 --data-dir DATA --out runs/sr/sa-imdn-flops
    # retrain and test each (the genotype is read from the search's result.json)
    python -m common.sr.train --genotype runs/sr/sa-imdn/result.json --paper-row sac-imdn \
        --data-dir DATA --out runs/sr/sa-imdn/retrain

The SAC rows (SA + partial channels) need the partial-channel mixed op, not built for SR yet; the SA rows
above are the closest runnable ones.

Cost (estimates, one V100-class GPU, from the paper's budgets and DLSR's defaults): each search is the
paper's 2.2 GPU-days budget (Table 3: "2.2 GPU days search budget for all search methods"; DLSR's code runs
1000 epochs × 1000 batches of 64 patches); `--epochs 200` stops near the paper's convergence times
(0.4 days SA-DLSR, 0.7 SAC-IMDN). A retrain (1000 epochs × 1000 batches of 32 128-pixel patches, DLSR's
train_beta_rfdn.sh) of a ~300 K-parameter net is about 1.5-2 GPU-days. Six rows: about 25 GPU-days.
"""
