"""StackSync in Caja (python3-caja, caja-python 2.0):
overlay emblems and menu items. A thin shim: the work is in
stacksync_common, installed beside it by `stacksync integrate install`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Caja", "2.0")
from gi.repository import Gio, GLib, GObject, Caja  # noqa: E402

import stacksync_common as common  # noqa: E402


class CajaToolkit(common.Toolkit):
    GLib = GLib

    def path_of(self, info):
        if info.get_uri_scheme() != "file":
            return None
        location = info.get_location()
        return location.get_path() if location is not None else None

    def copy_text(self, text):
        # The file manager's own GTK 3.
        try:
            gi.require_version("Gtk", "3.0")
            from gi.repository import Gdk, Gtk

            clipboard = Gtk.Clipboard.get(Gdk.SELECTION_CLIPBOARD)
            clipboard.set_text(text, -1)
            clipboard.store()
        except (ValueError, ImportError):
            common.copy_with_tools(text)

    def open_uri(self, uri):
        Gio.AppInfo.launch_default_for_uri(uri, None)


INTEGRATION = common.Integration(CajaToolkit())


class StackSyncExtension(GObject.GObject, Caja.InfoProvider, Caja.MenuProvider):
    def update_file_info(self, file):
        INTEGRATION.file_info(file)

    def get_file_items(self, window, files):
        items = []
        for name, label, tip, callback in INTEGRATION.menu_items(files):
            item = Caja.MenuItem(name=name, label=label, tip=tip)
            item.connect("activate", lambda _item, cb=callback: cb())
            items.append(item)
        return items

    def get_background_items(self, window, folder):
        return []
