from .safe_checkpointer import SafeCheckpointer

__all__ = ["SafeCheckpointer"]
