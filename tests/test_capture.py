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


# ---- output editing, the batched loop and the model/device policy ---------------------------------
from interpkit.capture import activations, iter_activations  # noqa: E402
from interpkit.checks import evaluating  # noqa: E402


def test_edit_changes_the_models_output_and_is_recorded():
    net, x = small_net(), torch.randn(5, 1, 8, 8)
    clean = net(x)
    with ik.capture(net, ["2"], edit={"2": lambda y: torch.zeros_like(y)}) as acts:
        out = net(x)
    assert (acts["2"] == 0).all()
    torch.testing.assert_close(out, net[5](torch.zeros(5, 2 * 8 * 8)))
    assert not torch.allclose(out, clean)
    torch.testing.assert_close(net(x), clean)  # hooks gone after the block


def test_edit_only_and_none_keeps_output():
    net, x = small_net(), torch.randn(5, 1, 8, 8)
    clean = net(x)
    with ik.capture(net, (), edit={"0": lambda y: None}):
        torch.testing.assert_close(net(x), clean)
    with pytest.raises(TypeError, match="must be a function"):
        with ik.capture(net, (), edit={"0": 3}):
            pass


def test_activations_equal_a_manual_loop_and_stop_after_last_layer():
    net, x = small_net(), torch.rand(37, 1, 8, 8)
    calls = []
    net[5].register_forward_pre_hook(lambda *_: calls.append(1))
    got = activations(net, x, ["0", "2"], batch_size=8, device="cpu")
    assert not calls, "the pass must stop after the last requested layer"
    torch.testing.assert_close(got["0"], net[0](x))
    torch.testing.assert_close(got["2"], net[2](net[1](net[0](x))))
    peaks = activations(net, x, "2", batch_size=5, reduce=lambda _, a: a.amax((2, 3)))
    torch.testing.assert_close(peaks["2"], got["2"].amax((2, 3)))
    rows = [r for r, _ in iter_activations(net, x, "0", batch_size=10)]
    assert rows == [slice(0, 10), slice(10, 20), slice(20, 30), slice(30, 37)]


def test_activations_take_image_sets_datasets_and_transforms():
    net, x = small_net(), torch.rand(9, 1, 8, 8)
    ref = activations(net, x, "2", batch_size=4)["2"]
    pairs = [(x[i], i) for i in range(len(x))]
    torch.testing.assert_close(activations(net, pairs, "2", batch_size=4)["2"], ref)
    ds = ik.data.ImageSet(x, torch.zeros(9, dtype=torch.long), name="t")
    torch.testing.assert_close(activations(net, ds, "2", batch_size=3)["2"], ref)
    t = activations(net, x, "0", transform=lambda b: b * 2)["0"]
    torch.testing.assert_close(t, net[0](x * 2))
    with pytest.raises(ValueError, match="batch_size"):
        activations(net, x, "0", batch_size=0)
    with pytest.raises(TypeError, match="ImageSet"):
        activations(net, 3, "0")


def test_evaluating_restores_mode_and_device_even_when_the_body_raises(monkeypatch):
    import interpkit.checks as checks

    net = small_net().train()
    net[1].eval()
    moves = []
    monkeypatch.setattr(checks, "resolve_device", lambda d, **_: torch.device(d))
    monkeypatch.setattr(net, "to", lambda d: moves.append(torch.device(d)) or net)
    with pytest.raises(RuntimeError, match="boom"):
        with evaluating(net, "cuda") as dev:
            assert dev == torch.device("cuda") and moves == [torch.device("cuda")]
            assert not any(m.training for m in net.modules())
            raise RuntimeError("boom")
    assert moves == [torch.device("cuda"), torch.device("cpu")]  # moved there and back
    assert net.training and not net[1].training and net[0].training
    moves.clear()
    with evaluating(net, "cpu"):
        pass
    assert moves == []  # already there: not moved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluating_moves_to_cuda_and_back():
    net = small_net()
    with evaluating(net, "cuda") as dev:
        assert next(net.parameters()).device.type == dev.type == "cuda"
        out = activations(net, torch.rand(4, 1, 8, 8), "2", device="cuda")["2"]
    assert next(net.parameters()).device.type == "cpu" and out.device.type == "cpu"


def test_iter_activations_restores_the_model_when_broken_off():
    net = small_net().train()
    it = iter_activations(net, torch.rand(20, 1, 8, 8), "0", batch_size=4)
    next(it)
    assert not net.training
    it.close()
    assert net.training and all(len(m._forward_hooks) == 0 for m in net.modules())
    assert torch.is_grad_enabled()
