"""SA-DARTS on ×2 super-resolution (SA paper §4.3, §6.7, Tables 3 and 7): spaces, data, PSNR, search, retrain.

Modules: `spaces` (IMDN and DLSR search spaces, genotypes, discrete nets, parameter and multiply-add
counts), `data` (DIV2K and the four test sets), `metrics` (MATLAB-style bicubic, PSNR on Y), `search`
(the bilevel search with a pluggable α regulariser and Eq. 18's FLOPs term), `train` (retrain a genotype
and report PSNR per test set beside the paper's row).

The paper's rows (commands; never run here). The search goes through `sa_darts.py --task sr`, which hands its
`regulariser` (L_SA, β-DARTS) to `common.sr.search.main`; DATA holds DIV2K/ and benchmark/
(see common.sr.data).

    # DLSR reproduced (plain DARTS on DLSR's space), SA-DLSR, SAC-DLSR, DLSR + β-DARTS
    python sa_darts.py --task sr --space dlsr --reg none --data-dir DATA --out runs/sr/dlsr-darts
    python sa_darts.py --task sr --space dlsr --reg sa   --data-dir DATA --out runs/sr/sa-dlsr
    python sa_darts.py --task sr --space dlsr --reg sa --partial-channels 4 --data-dir DATA --out runs/sr/sac-dlsr
    python sa_darts.py --task sr --space dlsr --reg beta --data-dir DATA --out runs/sr/dlsr-beta
    # IMDN + β-DARTS, SAC-IMDN, SAC-IMDN with the FLOPs constraint (Eq. 18)
    python sa_darts.py --task sr --space imdn --reg beta --data-dir DATA --out runs/sr/imdn-beta
    python sa_darts.py --task sr --space imdn --reg sa --partial-channels 4 --data-dir DATA --out runs/sr/sac-imdn
    python sa_darts.py --task sr --space imdn --reg sa --partial-channels 4 --flops-weight 1 \
        --data-dir DATA --out runs/sr/sac-imdn-flops
    # retrain and test each (the genotype is read from the search's result.json), e.g.
    python -m common.sr.train --genotype runs/sr/sac-imdn/result.json --paper-row sac-imdn \
        --data-dir DATA --out runs/sr/sac-imdn/retrain
    # the genotypes the paper prints, retrained directly (no search)
    python -m common.sr.train --genotype sac-imdn-flops --paper-row sac-imdn-flops --data-dir DATA --out runs/sr/paper-sac-imdn-flops
    python -m common.sr.train --genotype imdn --paper-row imdn --data-dir DATA --out runs/sr/imdn

`--task sr` must come first. The paper's search budgets are 2.2 GPU-days (1.2 for SAC); `--epochs` scales
the search (DLSR's code: 1000 epochs), and the paper reports the architecture settling after 0.4 (SA-DLSR),
0.11 (SAC-DLSR) and 0.7 (SAC-IMDN) days.

Cost (estimates for one V100-class GPU; nothing here was timed on a GPU): a search is the paper's budget,
2.2 GPU-days (1.2 with partial channels), Table 3's "Search Cost" column; a retrain (DLSR's 1000 epochs ×
1000 batches of 32 patches of 128 pixels, train_beta_rfdn.sh) of a 200-350 K-parameter net is about 1-2
GPU-days (10^6 steps at 60-120 ms: IMDN's ~0.4 T multiply-adds per batch). The six rows of the task
(3 searches at 2.2 + 3 at 1.2, 6 retrains at ~1.5): about 20 GPU-days.
"""
