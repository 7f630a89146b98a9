"""The file-manager extensions against a real daemon's socket, with only
the `gi` modules of Nautilus, Nemo and Caja stubbed (no file manager).

Run by crates/cli/tests/desktop_integration.rs, which starts a server and
`stacksync sync` daemons, installs the extensions with `stacksync
integrate install` and sets:

  STACKSYNC_SOCKET            the daemon's status socket
  STACKSYNC_TEST_EXTENSIONS   the data folder the extensions were installed in
  STACKSYNC_TEST_EXPECT       JSON {absolute path: status} as the daemon has them
  STACKSYNC_TEST_SLOW_SOCKET  a second daemon's socket, uploading slowly
  STACKSYNC_TEST_SLOW_EXPECT  JSON {absolute path: status} for that one
"""

import importlib.util
import json
import os
import select
import sys
import threading
import time
import types
import unittest

DEADLINE = 90.0
# Each status's emblem, as installed by `stacksync integrate install`
# (written out here, not read from the extension, so a swapped mapping fails).
EMBLEMS = {
    "synced": "emblem-stacksync-synced",
    "syncing": "emblem-stacksync-syncing",
    "pending": "emblem-stacksync-pending",
    "conflict": "emblem-stacksync-conflict",
    "error": "emblem-stacksync-error",
    "ignored": "emblem-stacksync-ignored",
}
MANAGERS = {
    "nautilus": ("nautilus-python/extensions", "stacksync_nautilus.py", "Nautilus"),
    "nemo": ("nemo-python/extensions", "stacksync_nemo.py", "Nemo"),
    "caja": ("caja-python/extensions", "stacksync_caja.py", "Caja"),
}

OPENED = []
COPIED = []


class MainLoop:
    """GLib's main loop as the extensions use it (idle and timeout
    callbacks, file-descriptor watches), run by the test's thread."""

    IO_IN, IO_ERR, IO_HUP = 1, 8, 16

    def __init__(self):
        self.next_id = 1
        self.timeouts = {}
        self.watches = {}

    def _add(self, table, entry):
        source = self.next_id
        self.next_id += 1
        table[source] = entry
        return source

    def idle_add(self, fn, *args):
        return self._add(self.timeouts, (time.time(), fn, args))

    def timeout_add(self, ms, fn, *args):
        return self._add(self.timeouts, (time.time() + ms / 1000.0, fn, args))

    def io_add_watch(self, fd, priority, condition, fn, *args):
        return self._add(self.watches, (fd, fn, args))

    def source_remove(self, source):
        self.timeouts.pop(source, None)
        self.watches.pop(source, None)

    def pump(self, seconds=0.05):
        """Runs what is due, and waits up to `seconds` for more."""
        end = time.time() + seconds
        while True:
            now = time.time()
            for source, (due, fn, args) in sorted(self.timeouts.items(), key=lambda kv: kv[1][0]):
                if due <= now and source in self.timeouts:
                    del self.timeouts[source]
                    if fn(*args):
                        self.timeouts[source] = (time.time() + 0.05, fn, args)
            wait = max(0.0, min([end - time.time()] + [due - time.time() for due, _, _ in self.timeouts.values()]))
            fds = {fd: source for source, (fd, _, _) in self.watches.items()}
            ready = select.select(list(fds), [], [], wait)[0] if fds else (time.sleep(wait) or [])
            for fd in ready:
                source = fds[fd]
                if source in self.watches:
                    _, fn, args = self.watches[source]
                    if not fn(fd, self.IO_IN, *args):
                        self.watches.pop(source, None)
            if time.time() >= end:
                return


LOOP = MainLoop()


def pump(seconds=0.05):
    LOOP.pump(seconds)


def install_fake_gi():
    """`gi` with the modules the shims import, recording what they do."""
    gi = types.ModuleType("gi")
    gi.require_version = lambda name, version: None
    repository = types.ModuleType("gi.repository")
    gi.repository = repository

    GObject = types.ModuleType("GObject")

    class GObjectBase:
        pass

    GObject.GObject = GObjectBase
    GLib = types.ModuleType("GLib")
    GLib.idle_add = LOOP.idle_add
    GLib.timeout_add = LOOP.timeout_add
    GLib.io_add_watch = LOOP.io_add_watch
    GLib.source_remove = LOOP.source_remove
    GLib.PRIORITY_DEFAULT = 0
    GLib.IO_IN, GLib.IO_ERR, GLib.IO_HUP = MainLoop.IO_IN, MainLoop.IO_ERR, MainLoop.IO_HUP
    Gio = types.ModuleType("Gio")

    class AppInfo:
        @staticmethod
        def launch_default_for_uri(uri, context):
            OPENED.append(uri)

    Gio.AppInfo = AppInfo

    class Clipboard:
        def set(self, text):
            COPIED.append(text)

        def set_text(self, text, length):
            COPIED.append(text)

        def store(self):
            pass

        @staticmethod
        def get(selection):
            return Clipboard()

    class Display:
        @staticmethod
        def get_default():
            return Display()

        def get_clipboard(self):
            return Clipboard()

    Gdk = types.ModuleType("Gdk")
    Gdk.Display = Display
    Gdk.SELECTION_CLIPBOARD = "CLIPBOARD"
    Gtk = types.ModuleType("Gtk")
    Gtk.Clipboard = Clipboard
    for name, value in [("GObject", GObject), ("GLib", GLib), ("Gio", Gio), ("Gdk", Gdk), ("Gtk", Gtk)]:
        setattr(repository, name, value)
        sys.modules["gi.repository." + name] = value
    for manager in ["Nautilus", "Nemo", "Caja"]:
        m = types.ModuleType(manager)

        class MenuItem:
            def __init__(self, name, label, tip):
                self.name, self.label, self.tip = name, label, tip
                self.handlers = []

            def connect(self, signal, handler):
                self.handlers.append(handler)

            def activate(self):
                for h in self.handlers:
                    h(self)

        m.InfoProvider = type("InfoProvider", (), {})
        m.MenuProvider = type("MenuProvider", (), {})
        m.MenuItem = MenuItem
        setattr(repository, manager, m)
        sys.modules["gi.repository." + manager] = m
    sys.modules["gi"] = gi
    sys.modules["gi.repository"] = repository


class FakeFileInfo:
    """What a file manager hands an InfoProvider for one file."""

    def __init__(self, path):
        self.path = path
        self.emblems = []
        self.invalidations = 0

    def get_uri_scheme(self):
        return "file"

    def get_location(self):
        path = self.path
        return types.SimpleNamespace(get_path=lambda: path)

    def add_emblem(self, emblem):
        self.emblems.append(emblem)

    def invalidate_extension_info(self):
        self.invalidations += 1


def load_shim(manager):
    folder, filename, _ = MANAGERS[manager]
    path = os.path.join(os.environ["STACKSYNC_TEST_EXTENSIONS"], folder, filename)
    spec = importlib.util.spec_from_file_location("shim_" + manager, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ask(extension, info):
    """Asks for `info`'s status as the file manager does: answered from
    the cache, or (on a miss) asked again each time the extension
    invalidates it, until an emblem shows. Returns the emblems shown."""
    end = time.time() + DEADLINE
    while True:
        info.emblems = []
        before = info.invalidations
        extension.update_file_info(info)
        if info.emblems:
            return info.emblems
        while info.invalidations == before:
            if time.time() > end:
                return []
            pump()


def expectations(var):
    text = os.environ.get(var)
    return json.loads(text) if text else None


@unittest.skipUnless(os.environ.get("STACKSYNC_TEST_EXTENSIONS"), "run by crates/cli/tests/desktop_integration.rs")
class Extensions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        install_fake_gi()
        cls.modules = {}
        for manager in MANAGERS:
            cls.modules[manager] = load_shim(manager)
        import stacksync_common

        cls.common = stacksync_common
        cls.client = stacksync_common.DaemonClient()

    def extension(self, manager):
        module = self.modules[manager]
        extension = module.StackSyncExtension()
        # Desktop notifications are recorded, not shown.
        told = []
        module.INTEGRATION.toolkit.notify = lambda summary, body: told.append((summary, body))
        return module, extension, told

    def test_1_every_status_shows_its_emblem(self):
        expected = expectations("STACKSYNC_TEST_EXPECT")
        slow = expectations("STACKSYNC_TEST_SLOW_EXPECT")
        self.assertEqual(
            set(expected.values()) | set(slow.values()),
            set(EMBLEMS),
            "the daemon is set up to show every status",
        )
        icons = os.path.join(os.environ["STACKSYNC_TEST_EXTENSIONS"], "icons/hicolor/scalable/emblems")
        for emblem in EMBLEMS.values():
            self.assertTrue(os.path.isfile(os.path.join(icons, emblem + ".svg")), emblem)
        for manager in MANAGERS:
            module, extension, _ = self.extension(manager)
            for path, status in expected.items():
                info = FakeFileInfo(path)
                with self.subTest(manager=manager, path=path):
                    self.assertEqual(ask(extension, info), [EMBLEMS[status]])
                    # Asked again: from the cache, at once.
                    again = FakeFileInfo(path)
                    extension.update_file_info(again)
                    self.assertEqual(again.emblems, [EMBLEMS[status]])
            # Outside the synced folder: nothing, and nothing asked.
            outside = FakeFileInfo("/etc/hostname")
            extension.update_file_info(outside)
            self.assertEqual((outside.emblems, outside.invalidations), ([], 0))

        # The second daemon, busy with a slow upload, through Nemo's shim.
        module = self.modules["nemo"]
        integration = self.common.Integration(module.NemoToolkit(), os.environ["STACKSYNC_TEST_SLOW_SOCKET"])
        provider = types.SimpleNamespace(update_file_info=integration.file_info)
        for path, status in slow.items():
            self.assertEqual(ask(provider, FakeFileInfo(path)), [EMBLEMS[status]], path)
        integration.stop()

    def test_2_a_status_change_reaches_the_extension_through_the_subscription(self):
        folder = self.client.request("hello")["folder"]
        for manager in MANAGERS:
            module, extension, _ = self.extension(manager)
            integration = module.INTEGRATION
            integration.start()
            end = time.time() + DEADLINE
            while not integration.subscription.connected:
                self.assertLess(time.time(), end, "subscribed")
                pump()
            self.client.request("pause")
            path = os.path.join(folder, "subscribed-%s.txt" % manager)
            with open(path, "w") as f:
                f.write("written while paused, through " + manager)
            info = FakeFileInfo(path)
            # New, not uploaded while paused: pending.
            self.assertEqual(ask(extension, info), [EMBLEMS["pending"]])
            seen = info.invalidations
            self.client.request("resume")
            # Never asked again unless the daemon's event invalidates it.
            end = time.time() + DEADLINE
            while True:
                self.assertLess(time.time(), end, "%s: the upload's status change never reached the extension" % manager)
                pump(0.2)
                if info.invalidations == seen:
                    continue
                shown = ask(extension, info)
                seen = info.invalidations
                if shown == [EMBLEMS["synced"]]:
                    break

    def test_3_menu_actions(self):
        expected = expectations("STACKSYNC_TEST_EXPECT")
        synced = [p for p, s in expected.items() if s == "synced" and not os.path.isdir(p)][0]
        module, extension, told = self.extension("nautilus")
        ask(extension, FakeFileInfo(synced))
        items = extension.get_file_items([FakeFileInfo(synced)])
        labels = [i.label for i in items]
        self.assertEqual(labels, ["Share\u2026", "Copy shared link", "Show versions", "Open in the web UI"])
        by_label = {i.label: i for i in items}

        def run(label):
            done = len(OPENED) + len(COPIED) + len(told)
            by_label[label].activate()
            end = time.time() + DEADLINE
            while len(OPENED) + len(COPIED) + len(told) == done:
                self.assertLess(time.time(), end, label)
                pump()
            self.assertEqual([t for t in told if t[0] == "StackSync"], [], "an error was shown")

        run("Open in the web UI")
        self.assertRegex(OPENED[-1], r"^http://127\.0\.0\.1:\d+/files/[0-9a-f-]{36}$")
        run("Show versions")
        self.assertRegex(OPENED[-1], r"^http://127\.0\.0\.1:\d+/versions/[0-9a-f-]{36}$")
        run("Share\u2026")
        self.assertRegex(OPENED[-1], r"^http://127\.0\.0\.1:\d+/files(/[0-9a-f-]{36})?$")
        run("Copy shared link")
        self.assertRegex(COPIED[-1], r"^http://127\.0\.0\.1:\d+/s/[^#/]+#\S+$")
        # Nothing outside the synced folder, nor for several files at once.
        self.assertEqual(extension.get_file_items([FakeFileInfo("/etc/hostname")]), [])
        self.assertEqual(extension.get_file_items([FakeFileInfo(synced), FakeFileInfo(synced)]), [])


if __name__ == "__main__":
    unittest.main()
