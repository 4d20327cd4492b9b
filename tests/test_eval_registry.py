"""The metric registry: named protocols, settings, errors a user can fix."""

import numpy as np
import pytest

from reelm.core.errors import ReelmError
from reelm.eval.distribution.registry import PROTOCOLS, UnknownProtocolError, compute, extract, list_protocols


def test_named_protocols_are_registered():
    assert {"fvd_16f", "fvd_16f_padlast", "kvd_16f", "kvd_16f_padlast", "fid_frames", "kid_frames", "is_frames",
            "clipsim"} == set(list_protocols())
    assert PROTOCOLS["kvd_16f"].settings == {"short": "refuse", "num_subsets": 100, "max_subset_size": 1000, "seed": 0}
    assert PROTOCOLS["fvd_16f_padlast"].settings["short"] == "pad_last"
    assert not PROTOCOLS["is_frames"].needs_reference and PROTOCOLS["clipsim"].needs_prompts


def test_user_errors_are_one_line_reelm_errors():
    clips = np.zeros((2, 16, 8, 8, 3), np.uint8)
    with pytest.raises(UnknownProtocolError, match="unknown metric protocol 'fvd'; known: clipsim"):
        compute("fvd", clips, clips)
    with pytest.raises(UnknownProtocolError, match="fvd_16f: unknown setting"):
        compute("fvd_16f", clips, clips, num_frame=8)
    with pytest.raises(ReelmError, match="needs reference"):
        compute("kid_frames", clips)
    with pytest.raises(ReelmError, match="needs i3d_path"):
        extract("fvd_16f", clips)
    with pytest.raises(ReelmError, match="no cached features"):
        extract("clipsim", clips)
    assert issubclass(UnknownProtocolError, ReelmError)


def test_results_without_weights_name_their_protocol():
    clips = np.zeros((2, 16, 8, 8, 3), np.uint8)
    for name in ("fvd_16f", "kvd_16f_padlast", "fid_frames", "kid_frames"):
        result = compute(name, clips, clips)
        assert result["protocol"]["name"] == name and not result["computed"] and result["reason"]
