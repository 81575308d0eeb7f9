"""What a `train` run may do with its output folder: start in an empty one, continue the
run found there (`--resume`, with that run's options) or replace it (`--overwrite`)."""

from __future__ import annotations

import json
import os

from ._data_file import check_same_file

__all__ = ["check_run_folder", "check_resumed_options", "RESUMABLE_OPTIONS"]

#: options a resumed run may change: how long it trains, how often it checkpoints, and
#: what it is evaluated on afterwards (training itself is the stored run's)
RESUMABLE_OPTIONS = frozenset({"steps", "checkpoint_every", "test_samples", "test_horizon"})
#: config.json entries derived from the options (their options are named instead)
_DERIVED = frozenset({"configuration_repr", "estimator_repr", "data_file"})


def check_run_folder(output: str, *, resume: bool, overwrite: bool) -> None:
    """Refuse to write into a folder holding an earlier run unless told what to do.

    Raises:
        ValueError: one line naming `--output`, the files found and the two options.
    """
    if resume and overwrite:
        raise ValueError("--overwrite: expected either --resume (continue the run in "
                         "--output) or --overwrite (replace it), got both")
    if resume or overwrite:
        return
    found = sorted(n for n in os.listdir(output) if not n.startswith("."))
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise ValueError(
            f"--output: expected an empty folder, got {output!r} holding {shown} (an "
            "earlier run?); add --resume to continue that run or --overwrite to replace it"
        )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _options(config: dict) -> dict:
    """Option name -> value, with the emulator's options as their own flags."""
    flat = {k: v for k, v in config.items() if k not in _DERIVED and k != "emulator"}
    emulator = config.get("emulator") or {}
    if "kind" in emulator:
        flat["emulator"] = emulator["kind"]
    for key in ("kernel_size", "hidden_channels", "depth"):
        if key in emulator:
            flat[key] = emulator[key]
    return flat


def check_resumed_options(output: str, resolved: dict) -> None:
    """Refuse `--resume` with options other than those of the run in `output` (its
    `config.json`), naming each one that differs; a folder without config.json (no
    earlier run) is not checked.

    Raises:
        ValueError: one line naming `--resume` and every differing option with both values.
    """
    path = os.path.join(output, "config.json")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            config = json.load(f)
        stored = _options(config)
    except (OSError, json.JSONDecodeError, AttributeError, TypeError) as err:
        raise ValueError(f"--resume: expected a readable config.json of the run, got "
                         f"{path!r} ({err})") from None
    if resolved.get("data"):  # a changed file first: it changes the derived options too
        check_same_file(config.get("data_file") or {}, resolved["data_file"], resolved["data"])
    given = _options(resolved)
    resumable = RESUMABLE_OPTIONS
    if resolved.get("data"):  # the held-out trajectories of a file are not trained on
        resumable = resumable - {"test_samples"}
    differ = [
        f"{_flag(k)} {given.get(k)!r} (the run: {stored.get(k)!r})"
        for k in sorted(set(given) | set(stored))
        if k not in resumable and given.get(k) != stored.get(k)
    ]
    if differ:
        raise ValueError(
            f"--resume: expected the options the checkpoint in {output!r} was trained with "
            f"(its config.json), got {', '.join(differ)}; repeat the run's options, or "
            "--overwrite to start a new run there"
        )
