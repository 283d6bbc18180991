"""Callbacks for `model.fit()` that watch and protect training."""

__all__ = []
