import pytest
import torch
from torch import nn

import interpkit as ik
from interpkit.capture import eval_mode


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 2, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 8 * 8, 3),
    ).eval()


def test_records_named_outputs_and_matches_manual_forward():
    net, x = small_net(), torch.randn(5, 1, 8, 8)
    with ik.capture(net, ["0", "2", "5"]) as acts:
        out = net(x)
    assert set(acts) == {"0", "2", "5"}
    torch.testing.assert_close(acts["5"], out)
    torch.testing.assert_close(acts["2"], net[2](net[1](net[0](x).clone())))


def test_inplace_relu_does_not_overwrite_pre_relu_values():
    net, x = small_net(), torch.randn(5, 1, 8, 8)
    with ik.capture(net, "0") as acts:
        net(x)
    assert (acts["0"] < 0).any(), (
        "the conv output before an in-place ReLU must keep its negative values"
    )
    torch.testing.assert_close(acts["0"], net[0](x))


def test_no_clone_shows_the_in_place_trap():
    net, x = small_net(), torch.randn(5, 1, 8, 8)
    with ik.capture(net, "0", clone=False) as acts:
        net(x)
    assert not (acts["0"] < 0).any()  # documented trap that clone=True avoids


def test_hooks_removed_after_block_and_after_an_error():
    net = small_net()
    with ik.capture(net, ["0", "2"]):
        assert len(net[0]._forward_hooks) == 1
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    with pytest.raises(RuntimeError):
        with ik.capture(net, ["0", "2"]):
            net(torch.randn(2, 3, 8, 8))  # wrong channel count raises inside the forward pass
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    assert "forward" not in vars(net)


def test_stop_ends_forward_after_last_requested_layer():
    net, calls = small_net(), []
    net[5].register_forward_hook(lambda *a: calls.append(1))
    with ik.capture(net, ["0", "2"], stop=True) as acts:
        out = net(torch.randn(3, 1, 8, 8))
    assert out is None and set(acts) == {"0", "2"} and calls == []
    assert "forward" not in vars(net)
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 3)  # forward restored


def test_unknown_layer_lists_closest_names():
    net = ik.models.vgg8(10, 1, width=0.125)
    with pytest.raises(KeyError, match="features.3"):
        with ik.capture(net, ["featres.3"]):
            pass


def test_module_objects_inputs_and_grad_option():
    net, x = small_net(), torch.randn(2, 1, 8, 8, requires_grad=True)
    with ik.capture(net, [net[2]], inputs=True, detach=False) as acts:
        net(x)
    assert "2" in acts and acts.inputs["2"].shape == (2, 4, 8, 8)
    acts["2"].sum().backward()
    assert x.grad is not None


def test_works_on_torchvision_resnet():
    m = ik.models.torchvision_model("resnet18", num_classes=5)
    with ik.capture(m, ["layer1", "layer4", "fc"]) as acts:
        m(torch.randn(1, 3, 64, 64))
    assert acts["layer4"].shape == (1, 512, 2, 2) and acts["fc"].shape == (1, 5)


class _Branchy(nn.Module):
    """A model with a branch its forward pass never uses."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.unused = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.conv(x).relu()


def test_missing_layer_says_whether_it_never_ran_or_was_not_requested():
    net = _Branchy().eval()
    with ik.capture(net, ["conv", "unused"]) as acts:
        net(torch.rand(2, 1, 4, 4))
    assert set(acts) == {"conv"} and acts.get("unused") is None and "unused" not in acts
    with pytest.raises(
        KeyError, match=r"'unused' did not run in the forward pass.*recorded so far: \['conv'\]"
    ):
        acts["unused"]
    with pytest.raises(
        KeyError, match=r"'other' was not requested; this capture records \['conv', 'unused'\]"
    ):
        acts["other"]


def test_activation_matrices_names_a_layer_that_never_ran():
    net = _Branchy().eval()
    with pytest.raises(KeyError, match="'unused' did not run"):
        ik.clustering.activation_matrices(
            net, torch.rand(4, 1, 4, 4), ["conv", "unused"], relu=True, device="cpu"
        )


class _Shared(nn.Module):
    """One convolution registered under two names (``conv`` and its alias ``again``), run once."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.again = self.conv
        self.head = nn.Conv2d(2, 1, 1)

    def forward(self, x):
        return self.head(self.again(x))


def test_a_shared_module_can_be_asked_for_by_either_name():
    """Defect: the alias of a shared module raised KeyError "no layer named 'again'" although model.again exists."""
    net, x = _Shared().eval(), torch.rand(2, 1, 4, 4)
    with ik.capture(net, ["again", "conv"]) as acts:
        net(x)
    torch.testing.assert_close(acts["again"], net.conv(x))
    torch.testing.assert_close(acts["conv"], acts["again"])
    with ik.capture(net, [net.again], stop=True) as acts:  # a module keeps its first name
        assert net(x) is None
    assert list(acts) == ["conv"]
    assert all(len(m._forward_hooks) == 0 for m in net.modules()) and "forward" not in vars(net)


def test_stop_with_the_model_itself_among_the_layers():
    """Defect: capture(net, "", stop=True) let the internal StopForward exception escape from net(x)."""
    net, x = small_net(), torch.randn(2, 1, 8, 8)
    with ik.capture(net, ["", "2"], stop=True) as acts:
        out = net(x)
    torch.testing.assert_close(acts[""], out)  # its pass had ended: the output comes back
    assert "forward" not in vars(net) and all(len(m._forward_hooks) == 0 for m in net.modules())


def test_stop_lets_a_submodule_called_directly_run_to_its_end():
    """Defect: with stop=True, calling a part of the model directly (not the model) let the internal
    StopForward exception escape from that call."""
    net, x = small_net(), torch.randn(2, 1, 8, 8)
    part = torch.nn.Sequential(*list(net)[:4])  # shares the modules "0" to "3"
    with ik.capture(net, ["0", "2"], stop=True) as acts:
        out = part(x)
        assert out.shape[0] == 2 and set(acts) == {"0", "2"}
        assert net(x) is None  # a pass through the model still stops
    assert "forward" not in vars(net)


def test_nested_stop_captures_restore_the_enclosing_guard():
    """Defect: leaving an inner stop=True capture deleted the outer one's guard, so the outer pass raised StopForward."""
    net, x = small_net(), torch.randn(2, 1, 8, 8)
    with ik.capture(net, "2", stop=True) as outer:
        with ik.capture(net, "0", stop=True) as inner:
            assert net(x) is None
        assert set(inner) == {"0"}
        assert net(x) is None
        assert set(outer) == {"2"}
    assert "forward" not in vars(net) and net(x).shape == (2, 3)


def test_a_layer_index_instead_of_a_name_is_a_clear_type_error():
    """Defect: capture(net, 0) failed with "'int' object is not iterable", capture(net, [0]) with a KeyError suggesting '0'."""
    net = small_net()
    for layers in (0, [0], ["0", 2]):
        with pytest.raises(TypeError, match="names are strings|'0', not 0"):
            with ik.capture(net, layers):
                pass
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_eval_mode_gives_every_submodule_its_own_mode_back():
    """Defect: the widget, activation_matrices and dissect each set model.eval() and gave back only
    the top-level flag (model.train(was_training)), so a partly frozen model (batch norm in eval
    mode while the rest trains) came back entirely in training mode."""
    net = small_net().train()
    net[1].eval()  # a frozen batch norm, say
    modes = [m.training for m in net.modules()]
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == modes
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError("fails inside the block")
    assert [m.training for m in net.modules()] == modes
