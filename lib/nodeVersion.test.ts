import { describe, expect, it } from 'vitest';
import { nodeVersionVerdict } from './nodeVersion.js';

describe('which Node.js may run Mariner', () => {
  it('Node 24 and 22 (and later) start without a word', () => {
    for (const version of ['24.0.0', '24.22.3', '22.0.0', '22.23.5', '25.1.0', '26.0.0']) expect(nodeVersionVerdict(version), version).toBeUndefined();
  });

  it('Node 20 from 20.19 starts with a warning that names the version, its end of life and how to get 24', () => {
    const verdict = nodeVersionVerdict('20.20.2');
    expect(verdict?.action).toBe('warn');
    expect(verdict?.message).toContain('Node.js 20.20.2 is past its end of life');
    expect(verdict?.message).toContain('Node.js 24 LTS');
    expect(verdict?.message).toContain('nvm install 24');
    expect(nodeVersionVerdict('20.19.0')?.action).toBe('warn');
    expect(nodeVersionVerdict('21.7.3')?.action).toBe('warn');
    expect(nodeVersionVerdict('23.11.1')?.action).toBe('warn');
  });

  it('anything older than 20.19 is refused, with what to install', () => {
    for (const version of ['20.18.3', '20.0.0', '18.20.8', '16.20.2']) {
      const verdict = nodeVersionVerdict(version);
      expect(verdict?.action, version).toBe('refuse');
      expect(verdict?.message).toContain(`Node.js ${version} is too old`);
      expect(verdict?.message).toContain('https://nodejs.org/en/download');
    }
  });
});
