from .safe_checkpointer import CheckpointError, SafeCheckpointer

__all__ = ["CheckpointError", "SafeCheckpointer"]
