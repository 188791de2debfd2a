"""Stage 6, deployment (paper ch. 8): serve an exported model behind an OpenAI-compatible API
(:mod:`ftkit.deploy.server`), talk to it with the ``openai`` client and load it
(:mod:`ftkit.deploy.client`)."""
