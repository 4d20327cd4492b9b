"""``reelm data ...``: render the synthetic world, tokenize datasets into shards, audit their quality."""

from reelm.commands import add_group


def register(subparsers) -> None:
    group = add_group(subparsers, "data", "Data: the synthetic captioned video world, pre-tokenized shards, quality audits.")
    from reelm.commands import data_audit, data_synthetic, data_tokenize

    data_synthetic.register(group)
    data_tokenize.register(group)
    data_audit.register(group)
