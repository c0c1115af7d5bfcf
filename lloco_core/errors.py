"""Errors a user can act on: each names the item (file, document, line) and what is wrong."""


class LlocoError(Exception):
    """Base for errors reported to the user as one clear line, with a non-zero exit."""


class InputError(LlocoError):
    """Bad input that stops the run: a missing model, an unreadable source, a bad config."""


class BadItem(LlocoError):
    """One bad item (document, line) that is skipped and listed in the summary."""


class StoreError(LlocoError):
    """Store content that cannot be trusted (an unreadable or invalid commit record, bytes that do not
    match their recorded checksum, a pickle where data belongs): names the file and what is wrong."""
