"""``credia.devtools.model``: ``./assistant`` reads the model's path from its stdout, so training must not write
there (on a fresh clone Rasa's "Your Rasa model is trained..." ended up in ``CREDIA_MODEL``)."""

from __future__ import annotations

from pathlib import Path

from credia.devtools import model


def test_training_output_goes_to_stderr_and_stdout_carries_only_the_path(tmp_path: Path, monkeypatch, capfd) -> None:
    target = tmp_path / "models" / "credia-0123456789abcdef.tar.gz"
    fake_python = tmp_path / "python"  # stands in for `python -m rasa train`: talks on stdout, writes the model
    fake_python.write_text(f"#!/bin/sh\necho 'Your Rasa model is trained and saved at {target}'\n"
                           f"mkdir -p {target.parent} && touch {target}\n")
    fake_python.chmod(0o755)
    monkeypatch.setattr(model, "model_path", lambda root=None: target)
    monkeypatch.setattr(model, "MODELS_DIR", target.parent)
    monkeypatch.setattr(model, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(model.sys, "executable", str(fake_python))

    assert model.ensure_model() == target and target.exists()
    out, err = capfd.readouterr()
    assert out == ""
    assert "Your Rasa model is trained" in err and "training the model" in err

    monkeypatch.setattr(model.sys, "argv", ["model", "--print-path"])
    model.main()  # up to date now: prints the path alone
    out, err = capfd.readouterr()
    assert out == f"{target}\n" and "up to date" in err
