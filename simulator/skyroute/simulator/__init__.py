"""The provider simulator: OpenAI, Anthropic and Gemini stand-ins driven by a scenario.

Run it with ``skyroute providers --listen HOST:PORT --scenario FILE`` (see
:mod:`skyroute.simulator.server`), or in-process from tests with
:class:`skyroute.simulator.harness.SimulatorThread`. The scenario format is
documented in ``examples/simulator/acmeshop.yaml`` and parsed by
:mod:`skyroute.simulator.scenario`.
"""
