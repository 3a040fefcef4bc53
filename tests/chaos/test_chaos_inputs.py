"""Chaos from clients and files, against a real daemon: 50 concurrent clients, disconnect
storms, hostile and oversized socket input, damaged model files, prompts past the context,
files that are not images; and a mixed seeded run of every fault kind."""

from __future__ import annotations

import pytest

from tests.chaos.catalogue import FAULTS
from tests.chaos.conftest import MakeRun, finish

pytestmark = pytest.mark.real


def test_fifty_clients_and_disconnect_storms(chaos: MakeRun) -> None:
    run = chaos(21)
    for kind in ("client_storm", "disconnect_storm", "disconnect_storm"):
        run.step(kind)
    finish(run)


def test_malformed_and_oversized_socket_input(chaos: MakeRun) -> None:
    run = chaos(22)
    for kind in ("malformed_input", "malformed_input", "oversized_input", "malformed_input"):
        run.step(kind)
    finish(run)


def test_wrong_types_inside_chat_parameters_are_typed_errors(chaos: MakeRun) -> None:
    run = chaos(23)
    run.step("malformed_params")
    finish(run)


def test_damaged_model_files_put_the_role_in_error_then_it_recovers(chaos: MakeRun) -> None:
    run = chaos(24)
    for _ in range(4):
        run.step("model_swap")
    finish(run)


def test_a_model_that_aborts_llama_cpp_is_an_error_naming_the_file(chaos: MakeRun) -> None:
    run = chaos(27)
    run.step("model_abort")
    finish(run)


def test_context_overflow_and_non_images_are_typed_errors(chaos: MakeRun) -> None:
    run = chaos(25)
    for kind in ("context_overflow", "non_image", "context_overflow", "non_image"):
        run.step(kind)
    finish(run)


def test_a_vision_prompt_past_the_context_is_a_context_overflow(chaos: MakeRun) -> None:
    run = chaos(26)
    run.step("context_overflow_vision")
    finish(run)


def test_a_mixed_seeded_run(chaos: MakeRun) -> None:
    run = chaos(2718)
    run.run(24, kinds=sorted(FAULTS))
    finish(run)
