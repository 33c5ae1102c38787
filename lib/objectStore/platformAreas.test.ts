import { describe, expect, it } from 'vitest';
import { platformAreaOf } from './keys.js';

describe('the areas of the store Mariner writes', () => {
  it('files/ and models/ are platform areas, whatever the case of their name; other keys are not', () => {
    expect(platformAreaOf('files/tenant-default/proj-1/file-1')).toBe('files');
    expect(platformAreaOf('models/tenant-default/fine-tuned/ftjob-1/adapter.bin')).toBe('models');
    expect(platformAreaOf('Models/tenant-default/llama/model.gguf')).toBe('models');
    expect(platformAreaOf('FILES/x')).toBe('files');
    expect(platformAreaOf('datasets/models/tiny.gguf')).toBeNull();
    expect(platformAreaOf('models-archive/tiny.gguf')).toBeNull();
    expect(platformAreaOf('shared/files/x')).toBeNull();
  });
});
