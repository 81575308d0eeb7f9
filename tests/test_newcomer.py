"""A researcher's own model and data, end to end (issue 26): each test makes the call a
newcomer made and checks what they now get."""

import os
import stat

import numpy as np
import pytest

from online_emulate._storage import new_file_mode, save_checkpoint
from online_emulate.cli._run import write_json


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert new_file_mode() == mode
        save_checkpoint(tmp_path / "c.npz", {"params": {"w": np.zeros(3)}, "step": 1})
        write_json(str(tmp_path / "config.json"), {"a": 1})
        with open(tmp_path / "plain.txt", "w") as f:  # what a PNG writer gets
            f.write("x")
    finally:
        os.umask(old)
    for name in ("c.npz", "config.json", "plain.txt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name
