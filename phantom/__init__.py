"""The CT phantom generator: synthetic abdominal CT with FLARE labels, from an analytic anatomy or from real label
maps (docs/phantom.md). `python -m phantom --help` lists the command's options; `phantom.generate.generate_case` and
`write_dataset` are the library's entry points."""
