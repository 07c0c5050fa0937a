"""/invocations bodies that once got a 500 (an exception no check caught): now a 400 naming
the field, decided in process (the server's JSON error path: test_server.py)."""
import pytest

from sg2_container.serving.request import NetworkInfo, RequestError, max_values, parse_request

NET = NetworkInfo(num_ws=6, w_dim=16, c_dim=0)


def _w_body(value: str) -> bytes:
    """A w of this network's shape, [6, 16], every entry `value` (JSON text)."""
    row = "[" + ",".join([value] * 16) + "]"
    return ('{"w": [' + ",".join([row] * 6) + "]}").encode()


@pytest.mark.parametrize("body,field,words", [
    (b'{"seed": 1, "truncation_psi": ' + b"9" * 400 + b"}", "truncation_psi",
     "a number from -2 to 2"),
    (b'{"w": [[' + b"9" * 400 + b"]]}", "w", "not a nested list of numbers"),
    (b'{"seed": ' + b"[" * 6000 + b"]" * 6000 + b"}", None, "nested too deeply"),
    (b'{"w": ' + b"[" * 6000 + b"]" * 6000 + b"}", None, "nested too deeply"),
    # Past Python's 4300-digit limit for reading an int: its ValueError was a 500.
    (b'{"seed": ' + b"9" * 5000 + b"}", None, "a number of thousands of digits"),
    (b'{"seed": 1, "truncation_psi": ' + b"9" * 5000 + b"}", None,
     "a number of thousands of digits"),
    # Finite as JSON (float64) but not as float32: rendered as a black image with a 200.
    (_w_body("1e39"), "w", "within float32's range"),
    # Text and booleans are not numbers (numpy would read "1" and true as 1.0).
    (_w_body('"1"'), "w", "not a nested list of numbers"),
    (_w_body("true"), "w", "not a nested list of numbers"),
])
def test_client_mistakes_are_400_naming_the_field(body, field, words):
    with pytest.raises(RequestError) as caught:
        parse_request(body, NET, 4)
    assert caught.value.status == 400 and caught.value.field == field
    assert words in str(caught.value)


def test_a_conditional_network_says_a_class_is_required():
    with pytest.raises(RequestError, match="class is required: the network is conditional, "
                                           "give an integer from 0 to 2"):
        parse_request(b'{"seed": 1}', NetworkInfo(num_ws=6, w_dim=16, c_dim=3), 4)


def test_more_values_than_any_valid_request_is_refused_before_parsing():
    limit = max_values(NET, 4)
    body = b'{"seeds": [' + b",".join([b"1"] * (limit + 2)) + b"]}"
    with pytest.raises(RequestError, match=f"more than {limit} values"):
        parse_request(body, NET, 4)
    assert parse_request(_w_body("0.5"), NET, 4).count == 1
    assert parse_request(_w_body("3"), NET, 4).count == 1  # integers are numbers too


@pytest.mark.parametrize("body", [
    b'{"seed": 1, "truncation_psi": null}',
    b'{"seed": 1, "noise_mode": null, "class": null, "seeds": null, "w": null, "mix": null}',
])
def test_null_is_absent_for_every_optional_field(body):
    assert parse_request(body, NET, 4) == parse_request(b'{"seed": 1}', NET, 4)
