"""OSC in (python-osc's packet parser on a UDP socket of our own): show software and phone
controllers set α, presets, the LFO and the model.

Fixed addresses, one argument each:

```
/dynastream/alpha f          α of the site(s) being edited
/dynastream/site/<name> f    α of one tuning site (res3_in, up1_in, out_in, ...)
/dynastream/preset i         preset 0-9, as the digit keys
/dynastream/model s          "next", or a model name
/dynastream/lfo i            1: LFO on, 0: off
```

and the addresses of an ``OscMap`` (configs/osc.yaml). α values outside the model's range are
clamped, as every α in live is. A packet python-osc cannot parse, an unknown address, a wrong
argument count or type is refused and counted; so is an α for a site the model lacks.
"""

import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Literal, Optional

from dynastream.nets.errors import short_repr
from dynastream.stream.alpha import ControlsError
from dynastream.stream.inputs import EDITED, Inbox, Op, OpError, alpha_value, lfo_value, model_value, preset_value
from dynastream.stream.sinks import StageError

PREFIX = "/dynastream/"
SOURCE = "osc"
_POLL_S = 0.2            # how often the receiving thread looks at its stop flag
_MAX_DATAGRAM = 65535


@dataclass(frozen=True)
class OscMap:
    """Extra addresses (configs/osc.yaml): address -> ``alpha`` (the site(s) being edited), a site
    name, ``preset N``, ``model next``, ``model NAME`` or ``lfo``. ``values``: ``alpha`` (a mapped
    fader sends α itself) or ``unit`` (0..1 spans the model's range, as MIDI's 0..127 does)."""

    values: Literal["alpha", "unit"] = "alpha"
    addresses: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.values not in ("alpha", "unit"):
            raise ControlsError(f"osc map: values must be alpha or unit, not {short_repr(self.values)}")
        if not isinstance(self.addresses, dict):
            raise ControlsError(f"osc map: addresses must map addresses to actions, not {short_repr(self.addresses)}")
        for address, target in self.addresses.items():
            if not isinstance(address, str) or not address.startswith("/") or " " in address:
                raise ControlsError(f"osc map: address {short_repr(address)} must start with / and hold no spaces")
            if address.startswith(PREFIX):
                raise ControlsError(f"osc map: {short_repr(address)} is under {PREFIX}, whose addresses are fixed")
            _parse_target(address, target)

    @classmethod
    def from_dict(cls, data: dict, where: str = "osc map") -> "OscMap":
        unknown = set(data) - {"values", "addresses"}
        if unknown:
            raise ControlsError(f"{where}: unknown key {short_repr(sorted(map(str, unknown))[0])} (known: values, addresses)")
        try:
            return cls(data.get("values", "alpha"), data.get("addresses") or {})
        except ControlsError as e:
            raise ControlsError(str(e).replace("osc map", where, 1)) from None


def _parse_target(address: str, target) -> tuple[str, object]:
    parts = str(target).split(maxsplit=1) if isinstance(target, str) else []
    if len(parts) == 1 and parts[0] in ("alpha", "lfo"):
        return parts[0], None
    if len(parts) == 1:
        return "site", parts[0]
    if len(parts) == 2 and parts[0] == "preset" and parts[1].isdigit() and int(parts[1]) <= 9:
        return "preset", int(parts[1])
    if len(parts) == 2 and parts[0] == "model":
        return "model", parts[1]
    raise ControlsError(f"osc map: {address} maps to {short_repr(target)}; use alpha, a site name, 'preset 0'-'preset 9', "
                        "'model next', 'model NAME' or lfo")


def _one(args: list):
    if len(args) != 1:
        raise OpError(f"expected one argument, got {len(args)}")
    return args[0]


def message_op(address: str, args: list, osc_map: OscMap) -> Optional[Op]:
    """The op for one OSC message; None for a button's release (a mapped preset or model address
    sent 0); OpError if it is refused."""
    if address.startswith(PREFIX):
        rest = address[len(PREFIX):]
        if rest == "alpha":
            return Op("alpha", alpha_value(_one(args)))
        if rest.startswith("site/") and len(rest) > 5 and "/" not in rest[5:]:
            return Op("alpha", alpha_value(_one(args)), rest[5:])
        if rest == "preset":
            return Op("preset", preset_value(_one(args)))
        if rest == "model":
            return Op("model", model_value(_one(args)))
        if rest == "lfo":
            return Op("lfo", lfo_value(_one(args)))
        raise OpError(f"unknown address {short_repr(address)}")
    target = osc_map.addresses.get(address)
    if target is None:
        raise OpError(f"unknown address {short_repr(address)}")
    what, arg = _parse_target(address, target)
    kind = "alpha" if osc_map.values == "alpha" else "fraction"
    if what in ("alpha", "site"):
        return Op(kind, alpha_value(_one(args)), EDITED if what == "alpha" else arg)
    if what == "lfo":
        return Op("lfo", lfo_value(_one(args)) if args else True)
    pressed = not args or (len(args) == 1 and not isinstance(args[0], str) and args[0] != 0)
    if not pressed:
        return None
    return Op("preset", arg) if what == "preset" else Op("model", arg)


class OscServer:
    """A UDP socket on ``host:port`` read by its own thread; messages go to ``inbox`` as ops."""

    def __init__(self, host: str, port: int, inbox: Inbox, osc_map: OscMap = OscMap()):
        try:
            from pythonosc.osc_packet import OscPacket, ParseError
        except ImportError:
            raise StageError("--osc needs python-osc: pip install 'dynastream[stage]'") from None

        self._packet, self._parse_error = OscPacket, ParseError
        self.inbox, self.osc_map = inbox, osc_map
        inbox.register(SOURCE)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError as e:
            self._sock.close()
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise StageError(f"--osc: cannot listen on {host} port {port} ({reason})") from None
        self._sock.settimeout(_POLL_S)
        self.host, self.port = host, self._sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="osc", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, _sender = self._sock.recvfrom(_MAX_DATAGRAM)
            except socket.timeout:
                continue
            except OSError:
                return   # the socket was closed
            self.handle(data)

    def handle(self, data: bytes) -> None:
        try:
            messages = [m.message for m in self._packet(data).messages]
        except self._parse_error:
            self.inbox.refuse(SOURCE, "not an OSC packet")
            return
        for message in messages:
            try:
                op = message_op(message.address, list(message.params), self.osc_map)
            except OpError as e:
                self.inbox.refuse(SOURCE, str(e))
                continue
            if op is not None:
                self.inbox.put(SOURCE, op)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2 * _POLL_S + 1)
        self._sock.close()
