"""/invocations bodies that once got a 500 (an exception no check caught): now a 400 naming
the field, decided in process (the server's JSON error path: test_server.py)."""
import pytest

from sg2_container.serving.request import NetworkInfo, RequestError, max_values, parse_request

NET = NetworkInfo(num_ws=6, w_dim=16, c_dim=0)


@pytest.mark.parametrize("body,field,words", [
    (b'{"seed": 1, "truncation_psi": ' + b"9" * 400 + b"}", "truncation_psi",
     "a number from -2 to 2"),
    (b'{"w": [[' + b"9" * 400 + b"]]}", "w", "not a nested list of numbers"),
    (b'{"seed": ' + b"[" * 6000 + b"]" * 6000 + b"}", None, "nested too deeply"),
    (b'{"w": ' + b"[" * 6000 + b"]" * 6000 + b"}", None, "nested too deeply"),
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
    w = b'{"w": [' + b",".join([b"[" + b",".join([b"0.5"] * 16) + b"]"] * 6) + b"]}"
    assert parse_request(w, NET, 4).count == 1
