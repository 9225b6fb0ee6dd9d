"""Deep unmixing methods (PyTorch): EGU-Net, ID-Net, DEQ-Unmix, and their shared pieces."""
