"""tfxr's synthetic chest phantoms as a source (the implementation lives in tfxr.data.synthetic)."""
from tfxr.data.synthetic import synthetic_source

__all__ = ["synthetic_source"]
