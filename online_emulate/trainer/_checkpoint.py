"""Checkpoints of a training run (the format lives in `online_emulate._storage`, below
the emulators, so that `emulators.save_emulator` shares it)."""

from .._storage import CHECKPOINT_FORMAT, StoredTree, load_checkpoint, restore_tree, save_checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "restore_tree", "StoredTree", "CHECKPOINT_FORMAT"]
