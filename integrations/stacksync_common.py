"""StackSync file-manager integration: what the Nautilus, Nemo and Caja
extensions share (each of them is a thin shim that imports this module,
installed beside it by `stacksync integrate install`).

It speaks version 1 of the daemon's status socket
(docs/desktop-integration.md): statuses of many paths in one request, a
subscription whose pushed `changed` events invalidate what the file
manager shows, and the menu's actions (web page, shared link, versions).

The file manager is never blocked, and no thread is used (nautilus-python
runs Python threads only while the file manager is calling into Python):
everything happens on the GLib main loop. A status is answered from the
cache; a miss is asked about with a non-blocking request (the misses of a
burst in one request) read when its socket is readable, and once the
answer is in the file is invalidated, so the file manager asks again and
is answered from the cache. Every request has a short timeout. The
subscription's connection is watched the same way; its events invalidate
what changed.

Standard library only; the shims pass in what they take from `gi`.
"""

import collections
import json
import os
import shutil
import socket
import subprocess
import time

PROTOCOL = 1

# A status as the daemon names it -> the emblem (icon name) shown for it.
# The icons are installed into the user's hicolor theme.
EMBLEMS = {
    "synced": "emblem-stacksync-synced",
    "syncing": "emblem-stacksync-syncing",
    "pending": "emblem-stacksync-pending",
    "conflict": "emblem-stacksync-conflict",
    "error": "emblem-stacksync-error",
    "ignored": "emblem-stacksync-ignored",
}

# Seconds a request may take before the file manager stops waiting for it.
TIMEOUT = 0.5
# Slower requests: a shared link is made by the server.
ACTION_TIMEOUT = 20.0
# Most paths in one `statuses` request.
BATCH = 500
# Most files whose objects are kept for invalidation.
TRACKED = 20000
# Set to a file path to log what the extension asks and shows.
DEBUG_ENV = "STACKSYNC_FM_DEBUG"


def debug(line):
    """Appends `line` to the debug file, when one is set."""
    target = os.environ.get(DEBUG_ENV)
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write("%.3f %s\n" % (time.time(), line))
    except OSError:
        pass


def socket_path():
    """Where the daemon's status socket is, as the client finds its home."""
    env = os.environ.get
    if env("STACKSYNC_SOCKET"):
        return env("STACKSYNC_SOCKET")
    if env("STACKSYNC_HOME"):
        return os.path.join(env("STACKSYNC_HOME"), "status.sock")
    config = env("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config, "stacksync", "status.sock")


class DaemonError(Exception):
    """The daemon refused a request, or could not be reached."""


def _read_line(sock, limit=64 * 1024 * 1024):
    data = bytearray()
    while True:
        piece = sock.recv(65536)
        if not piece:
            raise DaemonError("the daemon closed the connection")
        data.extend(piece)
        end = data.find(b"\n")
        if end >= 0:
            return bytes(data[:end]), bytes(data[end + 1:])
        if len(data) > limit:
            raise DaemonError("answer too long")


class DaemonClient:
    """One request per connection, with a timeout."""

    def __init__(self, path=None, timeout=TIMEOUT):
        self.path = path or socket_path()
        self.timeout = timeout

    def request(self, op, timeout=None, **fields):
        """The daemon's answer to `op` (a dict), or DaemonError."""
        message = dict(fields, v=PROTOCOL, op=op)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout or self.timeout)
                s.connect(self.path)
                s.sendall(json.dumps(message).encode() + b"\n")
                line, _ = _read_line(s)
        except (OSError, ValueError) as e:
            raise DaemonError("the StackSync daemon does not answer (%s)" % e) from e
        answer = json.loads(line)
        if not answer.get("ok"):
            raise DaemonError(answer.get("error") or "refused")
        return answer


class Request:
    """One request on a connection of its own, read from the main loop
    without blocking: `on_answer(dict)` or `on_error(str)` is called once."""

    def __init__(self, toolkit, path, message, on_answer, on_error, timeout=TIMEOUT):
        self.toolkit = toolkit
        self.on_answer = on_answer
        self.on_error = on_error
        self.buffer = bytearray()
        self.done = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # A local socket takes a short request at once.
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(path)
            self.sock.sendall(json.dumps(message).encode() + b"\n")
            self.sock.setblocking(False)
        except OSError as e:
            self.sock.close()
            self.done = True
            toolkit.idle_add(self._tell_error, "the StackSync daemon does not answer (%s)" % e)
            return
        self.watch = toolkit.watch_fd(self.sock.fileno(), self._readable)
        self.timer = toolkit.timeout_add(int(timeout * 1000), self._timed_out)

    def _tell_error(self, why):
        self.on_error(why)
        return False

    def _finish(self):
        self.done = True
        self.toolkit.source_remove(self.timer)
        self.sock.close()

    def _readable(self, fd, condition):
        if self.done:
            return False
        try:
            piece = self.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError as e:
            self._finish()
            self.on_error(str(e))
            return False
        if not piece:
            self._finish()
            self.on_error("the daemon closed the connection")
            return False
        self.buffer.extend(piece)
        end = self.buffer.find(b"\n")
        if end < 0:
            return True
        self._finish()
        try:
            answer = json.loads(bytes(self.buffer[:end]))
        except ValueError as e:
            self.on_error("a bad answer: %s" % e)
            return False
        if answer.get("ok"):
            self.on_answer(answer)
        else:
            self.on_error(answer.get("error") or "refused")
        return False

    def _timed_out(self):
        if not self.done:
            self.done = True
            self.toolkit.source_remove(self.watch)
            self.sock.close()
            self.on_error("the StackSync daemon did not answer in time")
        return False


class Subscription:
    """Follows the daemon's `changed` and `state` events on a connection
    of its own, watched from the main loop; reconnects (with a growing
    pause) when the daemon goes away."""

    def __init__(self, toolkit, path, on_changed, on_state=None, on_connect=None):
        self.toolkit = toolkit
        self.path = path
        self.on_changed = on_changed
        self.on_state = on_state or (lambda state: None)
        self.on_connect = on_connect or (lambda: None)
        self.connected = False
        self.stopped = False
        self.delay = 0.5
        self.sock = None
        self.watch = None

    def start(self):
        self._connect()

    def stop(self):
        self.stopped = True
        self._drop()

    def _drop(self):
        if self.watch is not None:
            self.toolkit.source_remove(self.watch)
            self.watch = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.connected = False

    def _connect(self):
        if self.stopped:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(TIMEOUT)
            sock.connect(self.path)
            sock.sendall(json.dumps({"v": PROTOCOL, "op": "subscribe"}).encode() + b"\n")
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            debug("subscription not made: %s" % e)
            self._later()
            return False
        self.sock = sock
        self.buffer = bytearray()
        self.acknowledged = False
        self.watch = self.toolkit.watch_fd(sock.fileno(), self._readable)
        return False

    def _later(self):
        if not self.stopped:
            self.toolkit.timeout_add(int(self.delay * 1000), self._connect)
            self.delay = min(self.delay * 2, 30.0)

    def _lost(self, why):
        debug("subscription lost: %s" % why)
        self.watch = None
        self._drop()
        self._later()
        return False

    def _readable(self, fd, condition):
        try:
            piece = self.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError as e:
            return self._lost(e)
        if not piece:
            return self._lost("the daemon closed the connection")
        self.buffer.extend(piece)
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                return True
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            try:
                message = json.loads(line)
            except ValueError as e:
                return self._lost("a bad line: %s" % e)
            if not self.acknowledged:
                if not message.get("ok"):
                    return self._lost(message.get("error") or "refused")
                self.acknowledged = True
                self.connected = True
                self.delay = 0.5
                debug("subscribed")
                # What changed while not subscribed was missed: look again.
                self.on_connect()
            elif message.get("event") == "changed":
                paths = None if message.get("all") else message.get("paths", [])
                debug("changed %s" % ("everything" if paths is None else " ".join(paths)))
                self.on_changed(paths)
            elif message.get("event") == "state":
                self.on_state(message.get("state", {}))


def copy_with_tools(text):
    """Puts `text` on the clipboard with wl-copy, xclip or xsel (whichever
    is installed), without waiting for it."""
    for command in (["wl-copy"], ["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"]):
        program = shutil.which(command[0])
        if program:
            child = subprocess.Popen(
                [program] + command[1:],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            child.stdin.write(text.encode())
            child.stdin.close()
            return True
    debug("no clipboard tool for %s" % text)
    return False


class Toolkit:
    """What the integration needs from the file manager and GLib; each
    shim gives its own (the names of the GI modules differ) with `GLib`
    set to the GLib module."""

    GLib = None

    def idle_add(self, fn, *args):
        return self.GLib.idle_add(fn, *args)

    def timeout_add(self, ms, fn, *args):
        return self.GLib.timeout_add(ms, fn, *args)

    def watch_fd(self, fd, fn):
        """Calls fn(fd, condition) when `fd` is readable or hung up, until
        fn returns False."""
        GLib = self.GLib
        return GLib.io_add_watch(fd, GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, fn)

    def source_remove(self, source):
        self.GLib.source_remove(source)

    def path_of(self, info):
        """The local path of a file object, or None."""
        raise NotImplementedError

    def add_emblem(self, info, emblem):
        info.add_emblem(emblem)

    def invalidate(self, info):
        info.invalidate_extension_info()

    def copy_text(self, text):
        raise NotImplementedError

    def open_uri(self, uri):
        raise NotImplementedError

    def notify(self, summary, body):
        program = shutil.which("notify-send")
        if program:
            subprocess.Popen(
                [program, "--app-name=StackSync", "--", summary, body],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )


class Integration:
    """Emblems and menu actions for one file manager: a cache of
    statuses, batched asynchronous queries, invalidation from the
    subscription."""

    def __init__(self, toolkit, socket=None):
        self.toolkit = toolkit
        self.socket = socket or socket_path()
        self.cache = {}
        self.tracked = collections.OrderedDict()
        # path -> [file objects] waiting for an answer
        self.waiting = {}
        self.asking = set()
        self.flush_scheduled = False
        self.folder = None
        self.web = None
        self.subscription = None

    # --- the daemon ---------------------------------------------------

    def start(self):
        """Subscribes (once)."""
        if self.subscription is None:
            self.subscription = Subscription(
                self.toolkit, self.socket, self._invalidate, on_connect=lambda: self._invalidate(None)
            )
            self.subscription.start()

    def stop(self):
        if self.subscription is not None:
            self.subscription.stop()

    def request(self, op, on_answer, on_error, timeout=TIMEOUT, **fields):
        """Sends `op` without blocking; one of the callbacks follows."""
        return Request(self.toolkit, self.socket, dict(fields, v=PROTOCOL, op=op), on_answer, on_error, timeout)

    def inside(self, path):
        folder = self.folder
        return folder is not None and (path == folder or path.startswith(folder.rstrip("/") + "/"))

    # --- statuses -----------------------------------------------------

    @staticmethod
    def emblem_for(status):
        return EMBLEMS.get(status)

    def file_info(self, info):
        """What an InfoProvider's update_file_info does, never blocking:
        shows the cached status; on a miss asks the daemon and, once it
        answered, invalidates the file (the file manager then asks again
        and is answered from the cache).

        (The asynchronous update_file_info_full is not used: Nautilus 43
        with nautilus-python 4.0 never calls it and stops loading the
        folder when an extension defines it.)"""
        self.start()
        path = self.toolkit.path_of(info)
        if path is None:
            return
        if self.folder is not None and not self.inside(path):
            return
        self.tracked[path] = info
        self.tracked.move_to_end(path)
        while len(self.tracked) > TRACKED:
            old, _ = self.tracked.popitem(last=False)
            self.cache.pop(old, None)
        status = self.cache.get(path)
        if status is not None:
            self._show(path, info, status)
            return
        self.waiting.setdefault(path, []).append(info)
        debug("status-request %s" % path)
        if not self.flush_scheduled:
            # The misses of a burst (a folder opening) go in one request.
            self.flush_scheduled = True
            self.toolkit.timeout_add(20, self._flush)

    def _show(self, path, info, status):
        emblem = self.emblem_for(status)
        debug("emblem %s %s %s" % (path, status, emblem))
        if emblem:
            self.toolkit.add_emblem(info, emblem)

    def _flush(self):
        self.flush_scheduled = False
        if self.folder is None:
            self.request("hello", self._hello_answered, self._unreachable)
            return False
        batch = [p for p in self.waiting if p not in self.asking]
        outside = [p for p in batch if not self.inside(p)]
        for p in outside:
            del self.waiting[p]
        asked = []
        for p in batch:
            if not self.inside(p):
                continue
            try:
                p.encode("utf-8")
                asked.append(p)
            except UnicodeEncodeError:
                # Not a name StackSync can hold.
                self._answered({p: "error"})
        for start in range(0, len(asked), BATCH):
            part = asked[start : start + BATCH]
            self.asking.update(part)
            self.request(
                "statuses",
                lambda answer, part=part: self._statuses_answered(part, answer),
                lambda why, part=part: self._statuses_failed(part, why),
                paths=part,
            )
        return False

    def _hello_answered(self, answer):
        self.folder = answer.get("folder")
        self.web = answer.get("web")
        if self.folder:
            self._flush()

    def _unreachable(self, why):
        debug("daemon unreachable: %s" % why)
        # Nothing to show; the file manager asks again when it redraws.
        self.waiting.clear()

    def _statuses_answered(self, part, answer):
        self.asking.difference_update(part)
        self._answered({e["path"]: e.get("status") or "error" for e in answer.get("entries", [])})

    def _statuses_failed(self, part, why):
        debug("statuses failed: %s" % why)
        self.asking.difference_update(part)
        for p in part:
            self.waiting.pop(p, None)

    def _answered(self, answers):
        """The files that waited are asked about again (invalidated)."""
        for path, status in answers.items():
            self.cache[path] = status
            for info in self.waiting.pop(path, []):
                self.toolkit.invalidate(info)

    def _invalidate(self, paths):
        """Forgets and redraws what changed (everything when `paths` is
        None)."""
        if paths is None:
            self.cache.clear()
            infos = list(self.tracked.items())
        else:
            infos = []
            for p in paths:
                self.cache.pop(p, None)
                if p in self.tracked:
                    infos.append((p, self.tracked[p]))
        for path, info in infos:
            debug("invalidate %s" % path)
            self.toolkit.invalidate(info)

    # --- the menu -----------------------------------------------------

    def menu_items(self, infos):
        """(name, label, tip, callback) of the items for the selection: one
        file or folder inside the synced folder."""
        if len(infos) != 1:
            return []
        path = self.toolkit.path_of(infos[0])
        if path is None or self.folder is None or not self.inside(path):
            return []
        items = []
        top = path.rstrip("/") == self.folder.rstrip("/")
        if not top:
            items.append(("StackSync::share", "Share\u2026", "Share it from the website (the folder that holds it)", lambda: self.run_action("share", path)))
            items.append(("StackSync::link", "Copy shared link", "Make a link anyone holding it can open, and copy it", lambda: self.run_action("link", path)))
            if not os.path.isdir(path):
                items.append(("StackSync::versions", "Show versions", "The stored versions of this file", lambda: self.run_action("versions", path)))
        items.append(("StackSync::web", "Open in the web UI", "Open it on the StackSync website", lambda: self.run_action("web", path)))
        return items

    def run_action(self, action, path):
        """Runs a menu action; its outcome is shown when the daemon (and
        for a link, the server) answered."""
        debug("action %s %s" % (action, path))
        failed = lambda why: self._tell("StackSync", why)
        if action == "link":
            self.request("share_url", lambda a: self._copied(a["url"]), failed, ACTION_TIMEOUT, path=path)
        elif action == "web":
            self.request("web_url", lambda a: self._open(a["url"]), failed, ACTION_TIMEOUT, path=path)
        elif action == "share":
            parent = os.path.dirname(path.rstrip("/"))
            self.request("web_url", lambda a: self._open(a["url"]), failed, ACTION_TIMEOUT, path=parent)
        elif action == "versions":
            self.request("versions", lambda a: self._versions(path, a), failed, ACTION_TIMEOUT, path=path)

    def _versions(self, path, answer):
        if answer.get("url"):
            self._open(answer["url"])
            return
        lines = [
            "version %d%s, %d bytes" % (v["version"], " (deleted)" if v.get("deleted") else "", v.get("size", 0))
            for v in answer.get("versions", [])
        ]
        self._tell("Versions of %s" % os.path.basename(path), "\n".join(lines) or "none")

    def _copied(self, url):
        debug("copied %s" % url)
        self.toolkit.copy_text(url)
        self.toolkit.notify("Shared link copied", url)
        return False

    def _open(self, url):
        debug("open %s" % url)
        self.toolkit.open_uri(url)
        return False

    def _tell(self, summary, body):
        debug("tell %s: %s" % (summary, body))
        self.toolkit.notify(summary, body)
        return False
