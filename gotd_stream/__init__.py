"""gotd-stream: streaming GOT-D data selection (Kang et al., ICLR 2024, arXiv 2405.02774)."""

__version__ = "0.1.0"
