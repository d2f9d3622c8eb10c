package org.hospitalhub.relay.client;

import java.util.regex.Pattern;

/** Relay addresses: {@code node}, {@code name@node} (a client or a service of that node). */
public final class Address {

    private static final Pattern PART = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,99}");

    private Address() {
    }

    public static boolean isValid(String a) {
        if (a == null) {
            return false;
        }
        int at = a.indexOf('@');
        if (at < 0) {
            return PART.matcher(a).matches();
        }
        return a.indexOf('@', at + 1) < 0 && PART.matcher(a.substring(0, at)).matches()
                && PART.matcher(a.substring(at + 1)).matches();
    }

    /** The node an address belongs to: the part after '@', or the whole address. */
    public static String node(String a) {
        int at = a.indexOf('@');
        return at < 0 ? a : a.substring(at + 1);
    }

    /** The part before '@', or null for a bare node address. */
    public static String local(String a) {
        int at = a.indexOf('@');
        return at < 0 ? null : a.substring(0, at);
    }
}
