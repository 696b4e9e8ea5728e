# my_apps.py
from pydantic import BaseModel
import runyard

class UpscaleIn(BaseModel):
    image: runyard.File          # a file in: the worker gives the app a local copy
    scale: int = 2

@runyard.app("acme/upscale", version="1.0.0", requirements=["secret:UPSCALER_KEY"])
def upscale(input: UpscaleIn, ctx: runyard.AppContext) -> runyard.File:
    ctx.log(f"upscaling {input.image.filename} x{input.scale}")
    data = input.image.read_bytes()
    ctx.progress(0.5, "halfway")
    ctx.check_cancelled()        # cooperative cancel (or read ctx.cancelled)
    return runyard.File(data=data, filename="out.png")   # a file out: stored, returned as a reference

@runyard.app("acme/counter", version="1.0.0")
class Counter:                   # a class app: setup() once per instance, state kept across runs in a session
    def setup(self, config: dict) -> None:
        self.total = config.get("start", 0)
    def run(self, input: dict, ctx: runyard.AppContext) -> dict:
        self.total += input.get("add", 1)
        return {"total": self.total}
