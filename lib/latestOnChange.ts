/**
 * A state feed for subscriptions: yields `read()` at once, then again after each change `listen`
 * reports. Changes that come while an event is being delivered fold into the next one, so a slow
 * subscriber sees the latest state, not every step. `listen` returns how to stop listening.
 */
export async function* latestOnChange<T>(
  listen: (changed: () => void) => (() => unknown) | Promise<() => unknown>,
  read: () => T | Promise<T>,
): AsyncGenerator<T> {
  let pending = true;
  let wake: (() => void) | undefined;
  const stop = await listen(() => {
    pending = true;
    wake?.();
  });
  try {
    for (;;) {
      if (!pending) await new Promise<void>((resolve) => (wake = resolve));
      pending = false;
      wake = undefined;
      yield await read();
    }
  } finally {
    await stop();
  }
}
