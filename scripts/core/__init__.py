"""reelm.core: the infrastructure every stage shares, one owner per concern; it imports no stage.

See :mod:`reelm` for the list.
"""
