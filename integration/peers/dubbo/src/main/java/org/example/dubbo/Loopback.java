package org.example.dubbo;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Keeps Dubbo on the loopback interface.
 *
 * <p>Dubbo treats every host starting with {@code 127.} (and {@code localhost}) as "no host
 * given" ({@code NetUtils.isInvalidLocalHost}): a provider then binds the wildcard address and a
 * consumer connects to the machine's first non-loopback address instead. So the peers name
 * loopback {@value #HOST}, a name that only this JVM resolves, to 127.0.0.1, through a hosts
 * file of its own (the JDK's {@code jdk.net.hosts.file}). {@link #install} must run before
 * anything resolves a name.
 */
final class Loopback {
    /** The name of 127.0.0.1 inside the peers. */
    static final String HOST = "dubbo-loopback";

    private Loopback() {}

    /** Points the JVM's name resolution at a hosts file mapping {@value #HOST} to 127.0.0.1. */
    static void install() throws IOException {
        if (System.getProperty("jdk.net.hosts.file") != null) {
            return;
        }
        Path hosts = Files.createTempFile("dubbo-peers-", ".hosts");
        hosts.toFile().deleteOnExit();
        Files.writeString(hosts, "127.0.0.1 " + HOST + "\n");
        System.setProperty("jdk.net.hosts.file", hosts.toString());
    }

    /** {@code host:port} with 127.0.0.1 or localhost written as {@value #HOST}. */
    static String address(String address) {
        int colon = address.lastIndexOf(':');
        if (colon < 0) {
            throw new IllegalArgumentException("expected host:port, got " + address);
        }
        String host = address.substring(0, colon);
        boolean loopback = host.equals("127.0.0.1") || host.equals("localhost");
        return (loopback ? HOST : host) + address.substring(colon);
    }
}
