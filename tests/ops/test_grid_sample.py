"""grid_sample: F.grid_sample's values and gradients, and second derivatives on every PyTorch
release (2.9's own grid_sample refuses them, and R1 through the geometric augmentation needs
them)."""
import pytest
import torch
import torch.nn.functional as F

from stylegan2_ops import grid_sample


def _native(x, grid):
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _case(dtype, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 3, 9, 7], generator=gen, dtype=dtype).to(device).requires_grad_()
    grid = (torch.rand([2, 11, 5, 2], generator=gen, dtype=dtype) * 2.4 - 1.2).to(device)
    return x, grid  # some lookups fall outside the image: the zero padding is exercised


def test_first_and_second_derivatives_are_right():
    x, grid = _case(torch.float64)
    assert torch.autograd.gradcheck(lambda t: grid_sample(t, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda t: grid_sample(t, grid), (x,))


def _r1_like(sample, x, grid, weights):
    """Output, gradient built for differentiation, and the gradient of its square norm."""
    y = sample(x, grid)
    (grad,) = torch.autograd.grad((y * weights).sum().square(), x, create_graph=True)
    (grad2,) = torch.autograd.grad(grad.square().sum(), x)
    return y, grad, grad2


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_the_same_numbers_as_pytorchs_own_where_it_has_second_derivatives(device):
    x, grid = _case(torch.float32, device)
    weights = torch.randn([2, 3, 11, 5], generator=torch.Generator().manual_seed(1)).to(device)
    ours = _r1_like(grid_sample, x, grid, weights)
    try:
        native = _r1_like(_native, x, grid, weights)
    except RuntimeError as error:
        assert "not implemented" in str(error)
        pytest.skip(f"torch {torch.__version__}'s grid_sample has no second derivative")
    for mine, theirs in zip(ours, native):
        assert torch.equal(mine, theirs)


def test_a_grid_that_needs_a_gradient_is_refused():
    x, grid = _case(torch.float32)
    with pytest.raises(ValueError, match="grid must be a constant"):
        grid_sample(x, grid.requires_grad_())
