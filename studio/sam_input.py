"""What SAM's image encoder is given, for every SAM model and both servers: the image scaled so its longest
side is the encoder's input size (segment_anything's ResizeLongestSide), normalised with SAM's pixel mean
and std (Sam.pixel_mean / pixel_std, for RGB in 0-255), zero-padded at the bottom and right."""

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def frame(size: tuple[int, int], input_size: int) -> tuple[int, int]:
    """(width, height) of an image of this size inside the encoder's input_size x input_size frame."""
    width, height = size
    scale = input_size / max(width, height)
    return int(width * scale + 0.5), int(height * scale + 0.5)
