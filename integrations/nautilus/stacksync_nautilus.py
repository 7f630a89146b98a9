"""StackSync in Nautilus (GNOME Files 43 and later, nautilus-python 4.0):
overlay emblems and menu items. A thin shim: the work is in
stacksync_common, installed beside it by `stacksync integrate install`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Nautilus", "4.0")
from gi.repository import Gio, GLib, GObject, Nautilus  # noqa: E402

import stacksync_common as common  # noqa: E402


class NautilusToolkit(common.Toolkit):
    GLib = GLib

    def path_of(self, info):
        if info.get_uri_scheme() != "file":
            return None
        location = info.get_location()
        return location.get_path() if location is not None else None

    def copy_text(self, text):
        # GTK 4's clipboard, when its typelib is installed (Nautilus does
        # not need it); else wl-copy, xclip or xsel.
        try:
            gi.require_version("Gdk", "4.0")
            from gi.repository import Gdk

            clipboard = Gdk.Display.get_default().get_clipboard()
            try:
                clipboard.set(text)
            except (TypeError, AttributeError):
                clipboard.set_content(Gdk.ContentProvider.new_for_value(text))
        except (ValueError, ImportError):
            common.copy_with_tools(text)

    def open_uri(self, uri):
        Gio.AppInfo.launch_default_for_uri(uri, None)


INTEGRATION = common.Integration(NautilusToolkit())


class StackSyncExtension(GObject.GObject, Nautilus.InfoProvider, Nautilus.MenuProvider):
    def update_file_info(self, file):
        INTEGRATION.file_info(file)

    def get_file_items(self, files):
        items = []
        for name, label, tip, callback in INTEGRATION.menu_items(files):
            item = Nautilus.MenuItem(name=name, label=label, tip=tip)
            item.connect("activate", lambda _item, cb=callback: cb())
            items.append(item)
        return items

    def get_background_items(self, folder):
        return []
