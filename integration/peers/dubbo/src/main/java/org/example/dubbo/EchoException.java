package org.example.dubbo;

/** The business exception {@link EchoService#fail} declares and throws. */
public class EchoException extends Exception {
    private static final long serialVersionUID = 1L;

    public EchoException() {
        super();
    }

    public EchoException(String message) {
        super(message);
    }
}
