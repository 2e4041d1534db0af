"""dorl: offline reinforcement learning for dialogue response generation."""

__version__ = "0.1.0"
