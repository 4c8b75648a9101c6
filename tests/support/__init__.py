"""Shared test support: the fixture code every test package uses, in one place.

Servers on loopback (hub.py: a Hugging Face Hub through olah; civitai.py: a Civitai-like API and
CDN; servers.py: ports and the quiet server), builders (gitrepos.py, wheels.py, safetensors.py,
desired.py, contexts.py, downloads.py), the CLI runner (cli.py), a running pod (pod.py with
pod_harness.py), the software fixtures (software.py, a pytest plugin) and the layer checker
(layering.py). Data files live in tests/fixtures/. See tests/README.md.
"""
