"""Audio in: finding audio files, decoding with limits, resampling, streaming long files, the log-mel
front end, model-input checks and synthetic test signals."""

from audiosim.engine.audio.decode import (AudioInfo, AudioLimitError, AudioMemoryError, AudioStream, is_audio_path,
                                          load_audio, load_audio_hashed, open_audio, resample, to_mono_float)
from audiosim.engine.audio.scan import FileItem, Scan, scan_folder
from audiosim.engine.audio.waveform import check_waveform, pad_to_min_length

__all__ = ["AudioInfo", "AudioLimitError", "AudioMemoryError", "AudioStream", "FileItem", "Scan", "check_waveform",
           "is_audio_path", "load_audio", "load_audio_hashed", "open_audio", "pad_to_min_length", "resample",
           "scan_folder", "to_mono_float"]
