"""``reelm data ...``: render the synthetic world, tokenize datasets into shards."""

from reelm.commands import add_group


def register(subparsers) -> None:
    group = add_group(subparsers, "data", "Data: the synthetic captioned video world, pre-tokenized shards.")
    from reelm.commands import data_synthetic, data_tokenize

    data_synthetic.register(group)
    data_tokenize.register(group)
