import pytest

from micronbert.cli import build_parser, main


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def test_every_subcommand_has_help(capsys):
    names = _commands()
    assert {"pretrain", "dma-map"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert name in capsys.readouterr().out


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    rc = main(["pretrain", "--frames", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "frames path not found" in err and str(tmp_path / "nope") in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
