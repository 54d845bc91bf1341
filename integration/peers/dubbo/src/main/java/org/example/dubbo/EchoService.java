package org.example.dubbo;

import java.util.concurrent.CompletableFuture;

/** The service both provider instances export (interface name = Dubbo service path). */
public interface EchoService {
    /** Returns {@code text} unchanged. */
    String echo(String text);

    /** Asynchronous echo (Dubbo's CompletableFuture signature): completes with {@code text}. */
    CompletableFuture<String> echoAsync(String text);

    /** The name of the provider instance that answered. */
    String whoami();

    /**
     * Arguments of most Hessian2 types (for the proxy's argument skipper); returns a summary
     * of what arrived.
     */
    String mixed(int i, long l, double d, boolean b, java.util.Date date, byte[] bin,
            java.util.List<Object> list, java.util.Map<String, Object> map, Payload payload,
            String big, Object nothing);

    /** Always throws {@link EchoException} carrying {@code text} in its message. */
    String fail(String text) throws EchoException;

    /** Sleeps {@code millis} ms, then returns the instance name. */
    String slow(long millis);

    /** Oneway (the consumer configures return=false): counts the call on the provider. */
    void fire(String text);

    /** How many {@link #fire} calls this instance has received. */
    int fired();
}
