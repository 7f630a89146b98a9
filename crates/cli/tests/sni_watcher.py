#!/usr/bin/env python3
"""A StatusNotifierWatcher stand-in for crates/cli/tests/tray.rs.

Owns org.kde.StatusNotifierWatcher on the session bus given by
DBUS_SESSION_BUS_ADDRESS, as a desktop's tray host does, and prints
`registered NAME` (flushed) for each item that registers, then keeps
serving until killed. Needs python3-gi (Gio), which the Nautilus tests'
tools bring (scripts/lib.sh ensure_desktop_test_tools).
"""

import sys

from gi.repository import Gio, GLib

XML = """
<node>
  <interface name="org.kde.StatusNotifierWatcher">
    <method name="RegisterStatusNotifierItem"><arg type="s" direction="in"/></method>
    <method name="RegisterStatusNotifierHost"><arg type="s" direction="in"/></method>
    <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
    <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
    <property name="ProtocolVersion" type="i" access="read"/>
    <signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
  </interface>
</node>
"""

items = []


def on_call(conn, sender, path, iface, method, params, invocation):
    if method == "RegisterStatusNotifierItem":
        (service,) = params.unpack()
        # An item may give its bus name or only its object path.
        name = service if not service.startswith("/") else sender
        items.append(name)
        print("registered", name, flush=True)
        conn.emit_signal(None, path, iface, "StatusNotifierItemRegistered", GLib.Variant("(s)", (name,)))
    invocation.return_value(None)


def on_get(conn, sender, path, iface, prop):
    return {
        "RegisteredStatusNotifierItems": GLib.Variant("as", items),
        "IsStatusNotifierHostRegistered": GLib.Variant("b", True),
        "ProtocolVersion": GLib.Variant("i", 0),
    }[prop]


def on_bus(conn, name):
    node = Gio.DBusNodeInfo.new_for_xml(XML)
    conn.register_object("/StatusNotifierWatcher", node.interfaces[0], on_call, on_get, None)


def on_name(conn, name):
    print("watching", flush=True)


def on_lost(conn, name):
    print("could not own", name, file=sys.stderr, flush=True)
    sys.exit(1)


Gio.bus_own_name(
    Gio.BusType.SESSION, "org.kde.StatusNotifierWatcher", Gio.BusNameOwnerFlags.NONE, on_bus, on_name, on_lost
)
GLib.MainLoop().run()
