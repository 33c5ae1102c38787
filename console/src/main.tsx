import '@mantine/core/styles.css';
import { createTheme, MantineProvider, type MantineColorScheme, type MantineColorSchemeManager } from '@mantine/core';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';

/** Light or dark as the system says until the user picks one; kept in memory only (nothing in localStorage). */
function memoryColorScheme(): MantineColorSchemeManager {
  let value: MantineColorScheme | undefined;
  return {
    get: (fallback) => value ?? fallback,
    set: (next) => {
      value = next;
    },
    subscribe: () => undefined,
    unsubscribe: () => undefined,
    clear: () => {
      value = undefined;
    },
  };
}

/** System fonts only: the console loads nothing from outside the platform. */
const theme = createTheme({
  primaryColor: 'indigo',
  fontFamily: 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
  fontFamilyMonospace: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
});

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <MantineProvider theme={theme} defaultColorScheme="auto" colorSchemeManager={memoryColorScheme()}>
      <App />
    </MantineProvider>
  </StrictMode>,
);
