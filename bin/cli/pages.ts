/** Every item of a cursor-paginated list (`after` = the last item's id, `hasMore`), page after page. */
export async function allPages<T extends { id: string }>(
  page: (after: string | null) => Promise<{ items: T[]; hasMore: boolean }>,
  max = 10_000,
): Promise<T[]> {
  const items: T[] = [];
  let after: string | null = null;
  for (;;) {
    const next = await page(after);
    items.push(...next.items);
    if (!next.hasMore || !next.items.length || items.length >= max) return items;
    after = next.items[next.items.length - 1]!.id;
  }
}
