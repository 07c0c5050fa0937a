// stylegan2_ops._cpu: the CPU kernels (kernels.h), bound without the GIL: the endpoint renders
// in a worker thread while its event loop serves.
#include "isa.h"
#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "sg2-container's CPU kernels: Winograd 3x3 convs, fused bias + activation";
  const auto no_gil = pybind11::call_guard<pybind11::gil_scoped_release>();
  module.def("conv3x3", &conv3x3,
             "conv2d(x * styles, w, padding=1) * dcoefs + noise from u = [36, C, K]", no_gil,
             pybind11::arg("x"), pybind11::arg("u"), pybind11::arg("styles") = pybind11::none(),
             pybind11::arg("dcoefs") = pybind11::none(), pybind11::arg("noise") = pybind11::none(),
             pybind11::arg("form") = -1, pybind11::arg("per_image") = true);
  module.def("conv3x3_weight_grad", &conv3x3_weight_grad,
             "dL/du [36, C, K] of conv3x3(x, u) given dL/dy, both channels_last", no_gil,
             pybind11::arg("x"), pybind11::arg("dy"), pybind11::arg("tiles_per_chunk") = -1);
  module.def("winograd_blocked_available", &winograd_blocked_available,
             "whether conv3x3's blocked form can run (MKL's sgemm_ exported by torch)");
  module.def("bias_act", &bias_act,
             "out = clamp(act(x + b) * gain, -clamp, clamp), act linear or leaky ReLU", no_gil,
             pybind11::arg("x"), pybind11::arg("b"), pybind11::arg("dim"), pybind11::arg("lrelu"),
             pybind11::arg("alpha"), pybind11::arg("gain"), pybind11::arg("clamp"),
             pybind11::arg("out"));
  module.def("isa", [] { return std::string(sg2::isa_name(sg2::active_isa())); },
             "the instruction set the kernels run with (baseline, avx2, avx512)");
  module.def(
      "variant_calls",
      [] {
        pybind11::dict calls;
        for (sg2::Isa isa : {sg2::Isa::kBaseline, sg2::Isa::kAvx2, sg2::Isa::kAvx512}) {
          calls[sg2::isa_name(isa)] = sg2::calls_of(isa);
        }
        return calls;
      },
      "calls of each compiled variant so far in this process (for tests)");
  module.def("supported_isa", [] { return std::string(sg2::isa_name(sg2::supported_isa())); },
             "the best instruction set this CPU supports");
}
