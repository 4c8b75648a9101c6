"""Model sources and the transfer layer.

``http`` builds the one requests session (retry policy, User-Agent, host-scoped tokens);
``download`` is the verified, resumable download engine; ``progress`` reports transfers;
``civitai`` and ``url`` resolve manifest entries to files the engine fetches; ``names`` keeps
names that come from the network inside their target folder.
"""
