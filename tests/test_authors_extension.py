"""The authors'-code extension of a method config (common.config.with_authors): a script's config class is
swapped for its subclass of the same name in authors/<m>.py on the command line, in --help (read statically,
without importing either file) and when the script runs as __main__."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest

from common.config import _static_parser, build_parser, parse_config, with_authors

SCRIPT = '''
"""toy method"""
from dataclasses import dataclass
from common.config import SearchConfig, arg, parse_config


@dataclass
class ToyConfig(SearchConfig):
    lam: float = arg(0.5, "λ of the paper")

    def w_weights(self) -> str:  # a hook: the paper's behaviour
        return "paper"


def main(argv=None):
    cfg = parse_config(ToyConfig, argv, description=__doc__)
    print(type(cfg).__module__, cfg.w_weights(), cfg.lam, cfg.quirk)


if __name__ == "__main__":
    main()
'''
AUTHORS = '''
from dataclasses import dataclass
from common.config import arg
import toy_darts


@dataclass
class ToyConfig(toy_darts.ToyConfig):
    quirk: int = arg(3, "the authors' quirk (toy.py:1)")

    def w_weights(self) -> str:
        assert toy_darts.ToyConfig is type(self).__mro__[1]  # one toy_darts module, also under __main__
        return "authors"
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_darts.py").write_text(SCRIPT)
    (tmp_path / "authors").mkdir()
    (tmp_path / "authors" / "__init__.py").write_text("")  # a regular package: found before the repository's
    (tmp_path / "authors" / "toy.py").write_text(AUTHORS)
    monkeypatch.syspath_prepend(str(tmp_path))
    package = types.ModuleType("authors")
    package.__path__ = [str(tmp_path / "authors")]  # this folder's authors/, not the repository's
    monkeypatch.setitem(sys.modules, "authors", package)
    for name in ("toy_darts", "authors.toy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_the_authors_subclass_is_parsed_and_its_hook_overrides(toy) -> None:
    import toy_darts
    cls = with_authors(toy_darts.ToyConfig)
    assert cls is not toy_darts.ToyConfig and cls.__module__ == "authors.toy" and cls.__name__ == "ToyConfig"
    cfg = parse_config(toy_darts.ToyConfig, ["--quirk", "7", "--lam", "0.25"])
    assert type(cfg) is cls and (cfg.quirk, cfg.lam, cfg.w_weights()) == (7, 0.25, "authors")
    assert toy_darts.ToyConfig().w_weights() == "paper"  # the method file alone keeps the paper's behaviour
    assert with_authors(cls) is cls


def test_static_help_reads_the_authors_fields_too(toy) -> None:
    import toy_darts
    static = _static_parser(toy / "toy_darts.py").format_help()
    assert "--quirk" in static and "toy.py:1" in static
    full = build_parser(toy_darts.ToyConfig, toy_darts.__doc__)
    full.prog = static.split()[1]  # the static parser's prog is the running program's name
    assert static == full.format_help()


def test_a_module_without_authors_code_keeps_its_class(toy) -> None:
    (toy / "authors" / "toy.py").unlink()
    import toy_darts
    assert with_authors(toy_darts.ToyConfig) is toy_darts.ToyConfig
    with pytest.raises(SystemExit):
        parse_config(toy_darts.ToyConfig, ["--quirk", "7"])  # the flag exists only with authors/toy.py


def test_an_authors_class_that_is_not_the_subclass_is_an_error(toy) -> None:
    (toy / "authors" / "toy.py").write_text(AUTHORS.replace("(toy_darts.ToyConfig)", ""))
    import toy_darts
    with pytest.raises(TypeError, match="must subclass"):
        with_authors(toy_darts.ToyConfig)


def test_run_as_a_script_the_authors_module_sees_the_running_module(toy) -> None:
    proc = subprocess.run([sys.executable, str(toy / "toy_darts.py"), "--quirk", "9"], cwd=toy,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": ":".join([str(toy), *sys.path[1:]]), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["authors.toy", "authors", "0.5", "9"]
