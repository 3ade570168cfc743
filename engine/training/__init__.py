"""Training: the data sets models learn from (log-mels decoded once and cached) and the trainers."""

from audiosim.engine.training.vae_data import LogMelSet, WindowSampler, load_logmels

__all__ = ["LogMelSet", "WindowSampler", "load_logmels"]
