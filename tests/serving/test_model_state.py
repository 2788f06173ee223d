"""Reading TF Serving's model_version_status entries: the one reader every poller uses."""

from servegate.serving.model_state import available_versions, version_state

STATUSES = [
    {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    {"version": "2", "state": "END", "status": {"error_code": "OK", "error_message": ""}},
    {"version": "4", "state": "END", "status": {"error_code": "INVALID_ARGUMENT", "error_message": "bad graph"}},
    {"version": "5", "state": "LOADING", "status": {}},
]


def test_available_versions_are_the_available_ones_in_order():
    assert available_versions(STATUSES) == [3]
    assert available_versions(STATUSES + [{"version": 1, "state": "available"}]) == [1, 3]


def test_a_version_that_failed_to_load_says_why_and_others_say_their_state():
    assert version_state(STATUSES, 4) == ("END", "INVALID_ARGUMENT: bad graph")
    assert version_state(STATUSES, 2) == ("END", "")  # unloaded on purpose: no error
    assert version_state(STATUSES, 5) == ("LOADING", "")
    assert version_state(STATUSES, 9) == ("not listed", "")
