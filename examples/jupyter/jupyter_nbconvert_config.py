# Loaded by `jupyter nbconvert` when JUPYTER_CONFIG_PATH names this directory
# (test/notebook.test.ts sets it; so can you, see examples/README.md).
#
# Deno's kernel (2.9) sometimes publishes a cell's output (console.log, the
# cell's value) a few milliseconds *after* it reports the cell done
# ("status: idle" on IOPub). JupyterLab shows such output anyway, routed by its
# parent message; nbclient, which nbconvert runs, stops listening at "idle" and
# silently drops it (about one cell in twenty here). For Deno kernels this keeps
# listening after "idle" until the cell's messages have been quiet for
# GRACE_SECONDS. Other kernels are left alone.
import queue

from nbclient import client as _nbclient
from nbclient.util import ensure_async
from nbclient.exceptions import CellExecutionComplete

GRACE_SECONDS = 0.2

_poll = getattr(_nbclient.NotebookClient, "_async_poll_output_msg", None)


def _is_deno(client):
    km = getattr(client, "km", None)
    name = getattr(km, "kernel_name", "") or client.nb.metadata.get("kernelspec", {}).get("name", "")
    return name.startswith("deno")


async def _poll_with_grace(self, parent_msg_id, cell, cell_index):
    await _poll(self, parent_msg_id, cell, cell_index)  # returns at the cell's "idle"
    if not _is_deno(self):
        return
    while True:
        try:
            msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=GRACE_SECONDS))
        except queue.Empty:
            return
        if msg["parent_header"].get("msg_id") != parent_msg_id:
            continue
        try:
            self.process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            pass


if _poll is not None and not getattr(_poll, "_pedigree_grace", False):
    _poll_with_grace._pedigree_grace = True
    _nbclient.NotebookClient._async_poll_output_msg = _poll_with_grace
