"""glonet-edge: ship a trained GloNet to edge devices as a family of depth-truncated engines."""

__version__ = "0.1.0"
