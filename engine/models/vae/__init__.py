"""The GLU-ConvVAE: its numpy features (:mod:`.features`) and its torch network and checkpoint (:mod:`.model`,
imported on use so that torch loads only then). Training lives in :mod:`audiosim.engine.training`."""

from audiosim.engine.models.vae.features import MelConfig, Normalizer, log_mel, windows

__all__ = ["MelConfig", "Normalizer", "log_mel", "windows"]
