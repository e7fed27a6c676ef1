"""Errors a user can cause (bad path, bad file, bad setting): shown as a message, never a traceback."""


class UserError(Exception):
    """A problem the user can fix; its message is written for a person, not a developer."""


class ImageReadError(UserError):
    """An image file that cannot be read (corrupt, truncated, not an image, too large, bad DICOM)."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, of the wrong kind, or unsafe to load."""
