"""The GLU-ConvVAE: model (torch), input data (numpy log-mel windows, cache, sampling) and training."""
