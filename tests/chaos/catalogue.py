"""The fault catalogue: every kind the runner can inject, and how often a mixed run picks it
(the slow ones — a 5 s start deadline, a relaunch — less often)."""

from __future__ import annotations

from tests.chaos import faults_clients, faults_setup, faults_workers
from tests.chaos.engine import Fault

FAULTS: dict[str, Fault] = {
    "worker_sigkill_streaming": faults_workers.worker_sigkill_streaming,
    "worker_sigkill_loading": faults_workers.worker_sigkill_loading,
    "worker_sigstop_streaming": faults_workers.worker_sigstop_streaming,
    "worker_sigstop_loading": faults_workers.worker_sigstop_loading,
    "crash_burst": faults_workers.crash_burst,
    "app_sigkill_frozen_worker": faults_workers.app_sigkill_frozen_worker,
    "second_launch": faults_setup.second_launch,
    "private_pools": faults_setup.private_pools,
    "client_storm": faults_clients.client_storm,
    "disconnect_storm": faults_clients.disconnect_storm,
    "malformed_input": faults_clients.malformed_input,
    "oversized_input": faults_clients.oversized_input,
    "malformed_params": faults_clients.malformed_params,
    "model_swap": faults_setup.model_swap,
    "model_abort": faults_setup.model_abort,
    "context_overflow": faults_setup.context_overflow,
    "context_overflow_vision": faults_setup.context_overflow_vision,
    "non_image": faults_setup.non_image,
}

WEIGHTS: dict[str, float] = {
    "worker_sigkill_streaming": 3.0,
    "worker_sigkill_loading": 3.0,
    "worker_sigstop_streaming": 2.0,
    "worker_sigstop_loading": 1.0,
    "crash_burst": 1.0,
    "app_sigkill_frozen_worker": 1.0,
    "second_launch": 1.0,
    "private_pools": 1.0,
    "client_storm": 1.0,
    "disconnect_storm": 2.0,
    "malformed_input": 2.0,
    "oversized_input": 0.5,
    "malformed_params": 1.0,
    "model_swap": 2.0,
    "model_abort": 0.5,
    "context_overflow": 1.0,
    "context_overflow_vision": 0.5,
    "non_image": 1.0,
}
